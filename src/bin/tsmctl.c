/* tsmctl: the command line for the tsmd APIs (over tsm_client).
 *
 *   tsmctl [global options] se import FILE [--format csv|json] [--chunk N]
 *   tsmctl [global options] se get (--msisdn N | --imsi I | CIN) [--id-only]
 *   tsmctl [global options] se list [--mno M] [--type T] [--limit N]
 *   tsmctl [global options] se sd list CIN [--limit N]
 *   tsmctl [global options] se sd assign CIN --aid AID --sp NAME [--privileges HEX] [--lcs L]
 *   tsmctl [global options] principal create KIND NAME [kind attributes]
 *   tsmctl [global options] principal list [--limit N] | principal get ID
 *   tsmctl [global options] principal bind-cert ID SUBJECT
 *   tsmctl [global options] principal unbind-cert ID SUBJECT
 *   tsmctl [global options] token issue (--principal-id ID | --kind K --name N) [...]
 *   tsmctl [global options] token revoke ID | token list [--principal-id ID]
 *   tsmctl [global options] audit verify [--db URL] | audit list [...]
 *   tsmctl [global options] mno devices|device|enrol|status|submit|jobs|job|cancel|
 *                               resolve|alerts|alert-clear ... [--instance NAME]
 *   tsmctl [global options] audit follow [--from SEQ] [--limit N]
 *   tsmctl [global options] cms import|cards|card|history|actions|destroy|lock|unlock|
 *                               retry|alerts|alert-clear|policy|policies|rules|rule|
 *                               rule-delete|decisions|notify|notify-show ...
 *
 * Profiles live in ~/.config/opentsm/config ($XDG_CONFIG_HOME/opentsm/config);
 * the syntax is tsm_client_profile_parse's (and in `tsmctl --help`). --profile or
 * OPENTSM_PROFILE picks one ("default" otherwise). --url, --token, --ca and
 * OPENTSM_URL / OPENTSM_TOKEN override the profile. A file holding a token
 * should be mode 0600: when group or others may read or write it, tsmctl
 * says so on stderr (naming the file and the chmod) and goes on. tsmctl
 * only reads profiles; it never writes one.
 *
 * Output: aligned tables, or with --json exactly one JSON document on stdout
 * (a list is one array, [] when empty) and, on failure, one JSON error object
 * on stderr. Every server-supplied string is printed escaped
 * (ot_utf8_escape; JSON output is pure ASCII).
 */
#define OT_LOG_COMPONENT "bin.tsmctl"
#include "client/mno_client.h"
#include "client/otascp.h"
#include "client/tsm_client.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/hex.h"
#include "core/log.h"
#include "core/utf8.h"
#include "db/audit.h"
#include "db/db.h"
#include "gp/cmd.h"
#include "net/json.h"
#include "svc/kit.h"
#include "tsm/csv.h"

#include <openssl/evp.h>

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef OT_VERSION
#    define OT_VERSION "0.0.0"
#endif

/* Exit codes (documented in --help). */
#define CTL_OK       0 /* success */
#define CTL_NEGATIVE 1 /* done, negative result: rows rejected, not found, chain broken */
#define CTL_USAGE    2 /* bad command line, profile or URL */
#define CTL_API      3 /* the server refused the request or answered nonsense */
#define CTL_CONN     4 /* cannot reach the server (connection, TLS, timeout) */
#define CTL_LOCAL    5 /* local failure (a file: CA, certificate, key, input; memory) */

#define CTL_CHUNK_ROWS  10000u
#define CTL_CHUNK_BYTES ((size_t)2 * 1024 * 1024)
#define CTL_FILE_MAX    ((size_t)1024 * 1024 * 1024)
#define CTL_MAX_ARGS    32
#define CTL_VALUE_MAX   1024
#define CTL_TABLE_COLS  8

static const char ctl_usage[] =
    "usage: tsmctl [global options] <command> [options]\n"
    "\n"
    "commands:\n"
    "  se import FILE       import secure elements from a CSV or JSON file\n"
    "  se get               look an SE up by --msisdn, --imsi or CIN\n"
    "  se list              list SEs (operator)\n"
    "  se sd list CIN       security domains on an SE (an SP sees its own)\n"
    "  se sd assign CIN     assign a security domain to a service provider (operator)\n"
    "  principal create     create a principal, with its kind's attributes (operator)\n"
    "  principal list|get   list principals / show one (operator)\n"
    "  principal bind-cert  bind a client certificate subject to an SP or a device (operator)\n"
    "  principal unbind-cert  withdraw a bound client certificate (operator)\n"
    "  token issue|revoke|list\n"
    "  audit verify|list    check the audit chain / list audit rows (operator)\n"
    "  mno devices|device|enrol|status   devices of an mno instance (--instance NAME)\n"
    "  mno submit|jobs|job|cancel|resolve   OTA jobs\n"
    "  mno alerts|alert-clear   SEs blocked after failed EXTERNAL AUTHENTICATEs\n"
    "  audit follow         print audit rows as they are written (operator)\n"
    "  pay sp-register|sps|sp|sp-revoke   service providers' back ends (docs/pay.md)\n"
    "  pay key-deposit|keys   an SP's keys (deposited from a file, never shown)\n"
    "  pay client-enrol|clients|client|client-revoke   payment clients\n"
    "  cms cards|card|history|actions   cards and their history (docs/cms.md)\n"
    "  cms destroy|lock|unlock   a subscriber's request for a lost or stolen card\n"
    "  cms import|retry|alerts|alert-clear|policy|policies   the operator's side\n"
    "  cms rules|rule|rule-delete|decisions   supervision's rules and decisions\n"
    "  cms notify|notify-show   a subscriber's notifications (webhook, e-mail)\n"
    "  sp services|deploy|instances|instance|op   an SP's services on SEs (docs/tsm.md)\n"
    "  sp activate|deactivate|lock|unlock|delete   a service instance's life cycle\n"
    "  sp communications|comm-start|comm-end|script|relay   scripts to the card\n"
    "  sp dm-token|dm-receipt   Delegated Management tokens and receipts\n"
    "  sp webhook|webhook-put|deliveries   completions told to the SP, their log\n"
    "  tsm mno-put|mnos|service-add|services|audit|dm-keys   the TSM operator's side\n"
    "\n"
    "global options:\n"
    "  --profile NAME   profile from ~/.config/opentsm/config (env OPENTSM_PROFILE)\n"
    "  --url URL        server, https://HOST[:PORT] or http://HOST[:PORT]\n"
    "                   (default https://127.0.0.1:8443; env OPENTSM_URL)\n"
    "  --token TOKEN    bearer token (env OPENTSM_TOKEN)\n"
    "  --ca FILE        PEM CA certificate that signed the server's certificate\n"
    "  --cert FILE --key FILE   client certificate and key (PEM) for mutual TLS\n"
    "  --json           JSON output: one document on stdout (a list is one array,\n"
    "                   [] when empty; audit follow: one object per line, a\n"
    "                   stream has no end); on failure one {\"error\":{...}}\n"
    "                   object on stderr and nothing more on stdout\n"
    "  --help, --version\n"
    "\n"
    "  tsmctl <command> --help   options of one command\n"
    "\n"
    "profile file: lines \"[profile NAME]\" and \"KEY = VALUE\" (KEY: url, token, ca,\n"
    "cert, key); blank lines and lines starting with # or ; are comments, and so is\n"
    "the rest of a line from a # or ; that follows a space; a value in double\n"
    "quotes is taken as written (no escapes). A profile or key given twice, an\n"
    "unknown key and anything else is an error naming the file and the line.\n"
    "\n"
    "Text from the server is printed with control characters, invalid UTF-8 and\n"
    "bidi controls escaped as \\xHH and \\u{HHHH} (the audit log's notation).\n"
    "\n"
    "exit status:\n"
    "  0 success\n"
    "  1 done with a negative result (rows rejected, not found, audit chain broken)\n"
    "  2 bad usage, profile file or --url\n"
    "  3 the server refused the request (HTTP 4xx other than 404, 5xx) or answered\n"
    "    something that is not the API's\n"
    "  4 cannot reach the server (refused, DNS, TLS handshake or certificate, timeout)\n"
    "  5 local failure: a file that cannot be read or is not what it should be\n"
    "    (--ca, --cert, --key, the import file), out of memory\n";

struct ctl_cmd_help {
    const char *name;
    const char *text;
};

static const struct ctl_cmd_help ctl_helps[] = {
    {"se import", "usage: tsmctl se import FILE [--format csv|json] [--chunk N]\n"
                  "\n"
                  "Uploads FILE in chunks of N rows (default 10000, at most 2 MiB each) to\n"
                  "POST /tsm/v1/secure-elements:import, with a progress bar on a terminal, then\n"
                  "prints the report: rows imported, unchanged (already registered, the same\n"
                  "data) and rejected (row number in the file, field, reason). Each chunk has an\n"
                  "Idempotency-Key derived from the file's SHA-256 and the chunk's rows, so a\n"
                  "re-run is safe (it replays the first answers). The format defaults to the file "
                  "extension (.csv / .json).\n"
                  "CSV: a header line naming the columns (docs/api/tsm.yaml, SeImportRow).\n"
                  "JSON: an array of row objects. A file without data rows is still sent, so\n"
                  "that the server checks its header. The report is printed only when the\n"
                  "server answered; a file that cannot be read or parsed prints none.\n"
                  "exit status: 0 all rows imported or unchanged, 1 some rejected, 2+ errors\n"},
    {"se get", "usage: tsmctl se get (--msisdn MSISDN | --imsi IMSI | CIN) [--id-only]\n"
               "\n"
               "Prints the SE's data (never keys), or with --id-only its CIN alone.\n"
               "exit status: 0 found, 1 not found, 2+ errors\n"},
    {"se list", "usage: tsmctl se list [--mno MNO] [--type UICC|eSE|microSD] [--limit N]\n"
                "\n"
                "Lists SEs (operator), following the pagination cursors; --limit caps the\n"
                "total (default: all).\n"},
    {"se sd list", "usage: tsmctl se sd list CIN [--limit N]\n"
                   "\n"
                   "Lists the security domains on the SE in AID order: all of them for an\n"
                   "operator, the ones it owns for a service provider. Follows the\n"
                   "pagination cursors; --limit caps the total (default: all).\n"},
    {"se sd assign",
     "usage: tsmctl se sd assign CIN --aid AID --sp NAME [--privileges HEX6] [--lcs LCS]\n"
     "\n"
     "Assigns a security domain (AID, 5 to 16 bytes hex) on the SE to service\n"
     "provider NAME (operator). LCS: INSTALLED, SELECTABLE (default), PERSONALIZED,\n"
     "LOCKED. Privileges: 3 bytes hex (default 800000). Idempotent.\n"},
    {"principal create",
     "usage: tsmctl principal create KIND NAME [--display-name TEXT]\n"
     "                               [--msisdn MSISDN]... [--imei IMEI] [--imsi IMSI]\n"
     "                               [--mno INSTANCE]\n"
     "\n"
     "KIND: operator, service_provider, subscriber, device. Idempotent.\n"
     "Attributes of a kind: service_provider --display-name; subscriber --msisdn\n"
     "(repeat it for each MSISDN); device --imei, --imsi and --mno (the mno\n"
     "instance it belongs to). The server validates them.\n"},
    {"principal list", "usage: tsmctl principal list [--limit N]\n"
                       "\n"
                       "Lists principals (operator), following the cursors.\n"},
    {"principal get", "usage: tsmctl principal get ID\n"
                      "\n"
                      "Shows one principal and its attributes (operator).\n"
                      "exit status: 0 found, 1 not found, 2+ errors\n"},
    {"principal bind-cert",
     "usage: tsmctl principal bind-cert ID SUBJECT\n"
     "\n"
     "Binds a client certificate subject DN (RFC 4514 text, as tsmd reports it) to\n"
     "service provider or device ID, for mutual TLS (a device's credential).\n"},
    {"principal unbind-cert",
     "usage: tsmctl principal unbind-cert ID SUBJECT\n"
     "\n"
     "Withdraws the client certificate SUBJECT from principal ID (a stolen phone's):\n"
     "it authenticates nobody from then on; a device's open push stream is closed.\n"
     "exit status: 0 withdrawn, 1 not bound to ID, 2+ errors\n"},
    {"token issue", "usage: tsmctl token issue (--principal-id ID | --kind KIND --name NAME)\n"
                    "                          [--ttl-days D] [--label TEXT] [--token-only]\n"
                    "\n"
                    "Issues a token (operator). With --kind and --name the principal is created\n"
                    "if missing. The token is shown once; --token-only prints it alone.\n"},
    {"token revoke", "usage: tsmctl token revoke ID\n"},
    {"token list", "usage: tsmctl token list [--principal-id ID] [--limit N]\n"
                   "\n"
                   "Lists tokens (never their text), following the cursors: an operator sees\n"
                   "all or one principal's, others their own. Labels are printed escaped.\n"},
    {"audit verify", "usage: tsmctl audit verify [--db URL]\n"
                     "\n"
                     "Recomputes the audit hash chain, through the API or, with --db\n"
                     "(sqlite:PATH or postgresql://...), on the database directly.\n"
                     "exit status: 0 intact, 1 broken (the first bad row is named), 2+ errors\n"},
    {"mno devices", "usage: tsmctl mno devices [--instance NAME] [--limit N]\n"
                    "\n"
                    "Lists the devices enrolled on the mno instance NAME (default: the\n"
                    "unnamed one, /mno/v1), following the cursors (operator).\n"},
    {"mno device", "usage: tsmctl mno device ID [--instance NAME]\n"
                   "\n"
                   "Shows one device: identities, online or offline, location area, last\n"
                   "seen, the CINs it may hold (operator).\n"
                   "exit status: 0 found, 1 not found, 2+ errors\n"},
    {"mno enrol", "usage: tsmctl mno enrol PRINCIPAL_ID --msisdn MSISDN [--cin CIN]...\n"
                  "                       [--instance NAME]\n"
                  "\n"
                  "Enrols the device principal PRINCIPAL_ID (kind device, its mno attribute\n"
                  "this instance) with its MSISDN and the SEs known to be in it (operator).\n"},
    {"mno status", "usage: tsmctl mno status (--msisdn N | --imsi I | --imei E) [--instance NAME]\n"
                   "\n"
                   "Online or offline, location area and last seen of a device.\n"
                   "exit status: 0 found, 1 not found, 2+ errors\n"},
    {"mno submit", "usage: tsmctl mno submit FILE [--instance NAME]\n"
                   "\n"
                   "Submits the OTA job in FILE, a JSON JobSubmit object (docs/api/mno.yaml,\n"
                   "docs/mno.md), with a fresh Idempotency-Key; prints the job.\n"},
    {"mno jobs", "usage: tsmctl mno jobs [--instance NAME] [--limit N]\n"
                 "\n"
                 "Lists OTA jobs (an operator all, a service provider its own).\n"},
    {"mno job", "usage: tsmctl mno job ID [--instance NAME]\n"
                "\n"
                "Shows a job: its state, reason, where a script stopped, every script with\n"
                "its R-APDUs. exit status: 0 found, 1 not found, 2+ errors\n"},
    {"mno cancel", "usage: tsmctl mno cancel ID [--instance NAME]\n"},
    {"mno resolve", "usage: tsmctl mno resolve ID (requeue|fail) [--instance NAME]\n"
                    "\n"
                    "Decides a job whose outcome is unknown (a destructive job interrupted):\n"
                    "run it again, or call it failed.\n"},
    {"mno alerts", "usage: tsmctl mno alerts [--instance NAME] [--limit N]\n"
                   "\n"
                   "SEs whose jobs stopped after failed EXTERNAL AUTHENTICATEs (operator).\n"},
    {"mno alert-clear", "usage: tsmctl mno alert-clear ID [--instance NAME]\n"},
    {"audit follow",
     "usage: tsmctl audit follow [--from SEQ] [--limit N]\n"
     "\n"
     "Prints audit rows as they are written (GET /admin/v1/events, operator), each\n"
     "once and in order, resuming by itself when the connection drops. Without\n"
     "--from: new rows only; --from SEQ: the rows after SEQ first (0: the whole\n"
     "log). --limit N stops after N rows. With --json: one JSON object per line.\n"
     "Ends (exit 3) when the token is revoked or expires.\n"},
    {"pay sp-register",
     "usage: tsmctl pay sp-register NAME --kind bank|transit --display-name TEXT\n"
     "                              --endpoint URL --pub HEX [--principal-id ID]\n"
     "\n"
     "Registers a service provider's back end with pay: its endpoint and its\n"
     "signing key (65 bytes, 04 X Y, hex); --principal-id names the service\n"
     "provider principal that may deposit its keys (operator).\n"},
    {"pay sps", "usage: tsmctl pay sps [--limit N]\n"},
    {"pay sp", "usage: tsmctl pay sp NAME\n"},
    {"pay sp-revoke", "usage: tsmctl pay sp-revoke NAME\n"
                      "\n"
                      "Nothing more is forwarded to it and clients erase its keys (operator).\n"},
    {"pay key-deposit",
     "usage: tsmctl pay key-deposit SP --key-type emv_imk|transit_imk|pin\n"
     "                              --key-file FILE\n"
     "\n"
     "Deposits the key in FILE (hex, 16, 24 or 32 bytes) as the next version:\n"
     "clients get it wrapped for their dongle, which then refuses the older\n"
     "versions (rotation). The key is read from a file, never the command line.\n"},
    {"pay keys", "usage: tsmctl pay keys SP [--limit N]\n"
                 "\n"
                 "The key types and versions of SP (never the keys).\n"},
    {"pay client-enrol", "usage: tsmctl pay client-enrol NAME --principal-id ID --dongle-pub HEX\n"
                         "\n"
                         "Enrols the device principal ID as payment client NAME (the dongle id)\n"
                         "with its dongle's public key (operator).\n"},
    {"pay clients", "usage: tsmctl pay clients [--limit N]\n"},
    {"pay client", "usage: tsmctl pay client NAME\n"},
    {"pay client-revoke", "usage: tsmctl pay client-revoke NAME\n"
                          "\n"
                          "The client gets no more keys and nothing it sends is forwarded.\n"},
    {"cms import",
     "usage: tsmctl cms import FILE\n"
     "\n"
     "Imports the cards in FILE, a JSON object {\"cards\": [...]} (docs/api/cms.yaml,\n"
     "CardImport): every card or none; the SD keys go to the key store (operator).\n"},
    {"cms cards", "usage: tsmctl cms cards [--state STATE] [--limit N]\n"
                  "\n"
                  "A subscriber's own cards, every card for the operator (one page);\n"
                  "--state awaiting_destroy lists the cards waiting for their phone.\n"},
    {"cms card", "usage: tsmctl cms card CARD\n"},
    {"cms history", "usage: tsmctl cms history CARD [--limit N]\n"
                    "\n"
                    "Every move of the card and what decided it, oldest first.\n"},
    {"cms actions", "usage: tsmctl cms actions CARD [--limit N]\n"},
    {"cms destroy", "usage: tsmctl cms destroy CARD --reason lost|stolen|fraudulent [--note TEXT]\n"
                    "\n"
                    "Asks for the card's destroy: at once when the phone is on, the moment it\n"
                    "comes back when it is off. Prints the accepted action.\n"},
    {"cms lock", "usage: tsmctl cms lock CARD --reason lost|stolen|fraudulent [--note TEXT]\n"},
    {"cms unlock", "usage: tsmctl cms unlock CARD [--reason found] [--note TEXT]\n"},
    {"cms retry", "usage: tsmctl cms retry CARD\n"
                  "\n"
                  "Runs the card's stalled action again (operator).\n"},
    {"cms alerts", "usage: tsmctl cms alerts [--limit N]\n"},
    {"cms alert-clear", "usage: tsmctl cms alert-clear ID\n"},
    {"cms policy",
     "usage: tsmctl cms policy ISSUER --mode software|puk|hardware [--scope card|app]\n"
     "\n"
     "How the issuer's cards are destroyed from now on (operator).\n"},
    {"cms policies", "usage: tsmctl cms policies\n"},
    {"cms rules", "usage: tsmctl cms rules\n"
                  "\n"
                  "Supervision's rules (operator).\n"},
    {"cms rule",
     "usage: tsmctl cms rule NAME --kind KIND --action lock|destroy [--max N] [--window-s S]\n"
     "                       [--min-s S] [--merchants M1,M2,...] [--disabled]\n"
     "\n"
     "Creates or replaces a supervision rule (operator). KIND and what it takes:\n"
     "velocity --max --window-s, wrong_pin --max --window-s, travel --min-s,\n"
     "blocklist --merchants, lost_stolen nothing (docs/cms.md).\n"},
    {"cms rule-delete", "usage: tsmctl cms rule-delete NAME\n"},
    {"cms decisions", "usage: tsmctl cms decisions [--limit N]\n"
                      "\n"
                      "Supervision's decisions, oldest first (operator); --json shows why.\n"},
    {"cms notify", "usage: tsmctl cms notify SUBSCRIBER_ID [--email ADDRESS] [--webhook URL\n"
                   "                         [--secret-file FILE]] [--events E1,E2,...]\n"
                   "\n"
                   "Replaces the subscriber's notification settings (the subscriber or the\n"
                   "operator): an absent channel is off. The webhook's HMAC secret (16..128\n"
                   "bytes) is read from FILE (one line) and never shown; once given it stays.\n"},
    {"cms notify-show", "usage: tsmctl cms notify-show SUBSCRIBER_ID\n"},
    {"sp services", "usage: tsmctl sp services [--limit N]\n"},
    {"sp deploy",
     "usage: tsmctl sp deploy SERVICE_ID (--cin CIN | --msisdn MSISDN) [--qualifier Q]\n"
     "\n"
     "Pre-personalization of the service on the SE: the TSM checks the SE's\n"
     "eligibility, creates the SP's security domain with temporary keys if it is\n"
     "missing, instantiates the application and extradites it to the SP SD.\n"},
    {"sp instances", "usage: tsmctl sp instances [--limit N]\n"},
    {"sp instance", "usage: tsmctl sp instance ID\n"},
    {"sp activate", "usage: tsmctl sp activate INSTANCE_ID\n"},
    {"sp deactivate", "usage: tsmctl sp deactivate INSTANCE_ID\n"},
    {"sp lock", "usage: tsmctl sp lock INSTANCE_ID\n"},
    {"sp unlock", "usage: tsmctl sp unlock INSTANCE_ID\n"},
    {"sp delete", "usage: tsmctl sp delete INSTANCE_ID\n"},
    {"sp communications", "usage: tsmctl sp communications [--instance ID] [--limit N]\n"
                          "  --instance ID  only that service instance's communications\n"},
    {"sp comm-start",
     "usage: tsmctl sp comm-start INSTANCE_ID [--max-scripts N] [--max-bytes N]\n"},
    {"sp comm-end", "usage: tsmctl sp comm-end COMM_ID [--status success|failure]\n"},
    {"sp script", "usage: tsmctl sp script COMM_ID [--purpose personalization|key_rotation|\n"
                  "                        post_personalization] C-APDU...\n"
                  "\n"
                  "Plain C-APDUs (hex) the TSM wraps in SCP03 for the SP's SD while it holds the\n"
                  "SD's keys; a PUT KEY carries the SP's new AES keys in the clear with their\n"
                  "KCVs (docs/tsm.md).\n"},
    {"sp relay", "usage: tsmctl sp relay COMM_ID --sd AID --kvn N --keys HEX C-APDU...\n"
                 "       tsmctl sp relay --cin CIN --sd AID --kvn N --keys HEX C-APDU...\n"
                 "\n"
                 "The SP's own SCP03 session (keys: enc = mac = dek = HEX) through the TSM's\n"
                 "relay, after the SP rotated its SD's keys (COMM_ID: a communication of its\n"
                 "service instance) or to an SD handed over to it (--cin: a Delegated\n"
                 "Management SD, a third-party TSM's SD); prints each plain R-APDU and\n"
                 "whether the card's R-MACs verified.\n"},
    {"sp dm-token", "usage: tsmctl sp dm-token CIN SD_AID C-APDU\n"
                    "\n"
                    "Asks the central TSM to approve one plain INSTALL or DELETE of a Delegated\n"
                    "Management SD (token field empty); prints the token id and the command\n"
                    "with its token, to send in the SD's own secure channel.\n"},
    {"sp webhook", "usage: tsmctl sp webhook\n"
                   "\n"
                   "The SP's webhook: its URL and the secret's version (never the secret).\n"},
    {"sp webhook-put", "usage: tsmctl sp webhook-put --url-of URL --secret-file FILE\n"
                       "\n"
                       "Where the SP's completed operations are POSTed, signed with HMAC-SHA-256\n"
                       "under the secret in FILE (16 to 128 bytes).\n"},
    {"sp deliveries", "usage: tsmctl sp deliveries [--limit N]\n"
                      "\n"
                      "The SP's webhook deliveries, oldest first: event, state (pending,\n"
                      "delivered, failed), attempts and the last error (--json: each attempt).\n"},
    {"sp dm-receipt", "usage: tsmctl sp dm-receipt TOKEN_ID R-APDU\n"
                      "\n"
                      "Hands the card's answer (data and status word) to the tokened command\n"
                      "back to the TSM, which checks the receipt and updates its view.\n"},
    {"sp op", "usage: tsmctl sp op OPERATION_ID\n"},
    {"tsm mno-put",
     "usage: tsmctl tsm mno-put NAME --url-of URL --token-file FILE [--ca-file FILE]\n"},
    {"tsm mnos", "usage: tsmctl tsm mnos [--limit N]\n"},
    {"tsm dm-keys", "usage: tsmctl tsm dm-keys CIN --token-key-file FILE --receipt-key-file FILE\n"
                    "\n"
                    "The SE's Delegated Management keys (hex AES keys in the files): the token\n"
                    "key (KVN 70) and the receipt key (KVN 71); kept in the key store, never\n"
                    "shown.\n"},
    {"tsm service-add",
     "usage: tsmctl tsm service-add FILE (one JSON service, docs/api/tsm.yaml)\n"},
    {"tsm services", "usage: tsmctl tsm services [--limit N]\n"},
    {"tsm audit", "usage: tsmctl tsm audit CIN\n"
                  "\n"
                  "Reads the SE's content (GET STATUS through its network) and lists where it\n"
                  "differs from the TSM's registry.\n"},

    {"audit list", "usage: tsmctl audit list [--limit N] [--action A] [--principal-id ID]\n"
                   "                         [--request-id R]\n"
                   "\n"
                   "Lists audit rows in order, following the cursors (default limit 100).\n"
                   "Every field is printed escaped: a row never stops the listing.\n"},
};

/* Global state of the program (STYLE 9). */
static bool g_json;

/* ---- errors ------------------------------------------------------------- */

/* Untrusted text escaped for printing (core/utf8.h); returns its width in
 * terminal columns. */
static size_t ctl_esc(const char *s, size_t n, char *out, size_t cap)
{
    size_t width = 0;

    (void)ot_utf8_escape(s, n, out, cap, true, NULL, &width);
    return width;
}

static const char *ctl_kind_name(int rc)
{
    switch (rc) {
    case CTL_NEGATIVE:
        return "not_found";
    case CTL_USAGE:
        return "usage";
    case CTL_API:
        return "server";
    case CTL_CONN:
        return "transport";
    default:
        return "local";
    }
}

static void ctl_print_json_to(FILE *out, const json_t *j)
{
    char *s =
        json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);

    if (s != NULL) {
        fputs(s, out);
        fputc('\n', out);
    }
    free(s);
}

/* Prints one error (text already escaped) to stderr, as a line or as a JSON
 * error object; returns rc. ce: the client's error, for its parts. */
static int ctl_emit(int rc, const char *text, const struct tsm_client_err *ce)
{
    json_t *o;
    json_t *e;

    if (!g_json) {
        fprintf(stderr, "tsmctl: %s\n", text);
        return rc;
    }
    o = json_obj_new();
    e = json_obj_new();
    if (o == NULL || e == NULL || json_put(o, "error", e) != OT_OK) {
        json_free(o);
        json_free(e);
        fprintf(stderr, "tsmctl: %s\n", text);
        return rc;
    }
    (void)json_put_str(e, "kind", ctl_kind_name(rc));
    (void)json_put_int(e, "exit", rc);
    (void)json_put_str(e, "text", text);
    if (ce != NULL && ce->status != 0) {
        (void)json_put_int(e, "status", ce->status);
    }
    if (ce != NULL && ce->code[0] != '\0') {
        (void)json_put_str(e, "code", ce->code);
        (void)json_put_str(e, "message", ce->message);
    }
    if (ce != NULL && ce->field[0] != '\0') {
        (void)json_put_str(e, "field", ce->field);
    }
    if (ce != NULL && ce->request_id[0] != '\0') {
        (void)json_put_str(e, "request_id", ce->request_id);
    }
    if (ce != NULL && ce->retry_after >= 0) {
        (void)json_put_int(e, "retry_after", ce->retry_after);
    }
    if (ce != NULL && ce->transport[0] != '\0') {
        (void)json_put_str(e, "transport", ce->transport);
    }
    ctl_print_json_to(stderr, o);
    json_free(o);
    return rc;
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
ctl_fail(int rc, const char *fmt, ...)
{
    char raw[1024];
    char text[1400];
    va_list ap;

    va_start(ap, fmt);
    (void)vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    (void)ctl_esc(raw, strlen(raw), text, sizeof(text));
    return ctl_emit(rc, text, NULL);
}

static int ctl_rc_of(const struct tsm_client_err *e)
{
    switch (e->fail) {
    case TSM_CLIENT_OK:
        return CTL_OK;
    case TSM_CLIENT_USAGE:
        return CTL_USAGE;
    case TSM_CLIENT_TRANSPORT:
        return CTL_CONN;
    case TSM_CLIENT_HTTP:
        return e->status == 404 ? CTL_NEGATIVE : CTL_API;
    case TSM_CLIENT_PROTOCOL:
        return CTL_API;
    case TSM_CLIENT_LOCAL:
    default:
        return CTL_LOCAL;
    }
}

/* Prints the client's error (prefix: context, "" for none); returns the
 * exit code it maps to. */
static int ctl_client_fail(const char *prefix, const struct tsm_client_err *e)
{
    char text[sizeof(e->text) + 160];

    (void)snprintf(text, sizeof(text), "%s%s", prefix, e->text);
    return ctl_emit(ctl_rc_of(e), text, e);
}

/* ---- arguments ---------------------------------------------------------- */

struct ctl_opt {
    const char *name;
    bool has_arg;
    bool repeat; /* may be given more than once */
};

struct ctl_args {
    const char *pos[CTL_MAX_ARGS];
    size_t npos;
    const char *opt[CTL_MAX_ARGS];
    const char *val[CTL_MAX_ARGS];
    size_t nopt;
    bool help;
};

static const char *ctl_get(const struct ctl_args *a, const char *name)
{
    size_t i;

    for (i = 0; i < a->nopt; i++) {
        if (strcmp(a->opt[i], name) == 0) {
            return a->val[i] != NULL ? a->val[i] : "";
        }
    }
    return NULL;
}

/* Every value of a repeatable option, in order; returns how many (at most max). */
static size_t ctl_get_all(const struct ctl_args *a, const char *name, const char **out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; i < a->nopt; i++) {
        if (strcmp(a->opt[i], name) == 0) {
            if (n < max) {
                out[n] = a->val[i];
            }
            n++;
        }
    }
    return n;
}

/* Parses argv[first..argc) against opts. Prints why and returns false on an
 * unknown option, a missing value or a non-repeatable option given twice. */
static bool ctl_parse(const char *cmd, int argc, char **argv, int first, const struct ctl_opt *opts,
                      struct ctl_args *a)
{
    int i;
    size_t k;

    memset(a, 0, sizeof(*a));
    for (i = first; i < argc; i++) {
        const char *s = argv[i];
        if (strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0) {
            a->help = true;
            continue;
        }
        if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
            if (a->npos == CTL_MAX_ARGS) {
                fprintf(stderr, "tsmctl %s: too many arguments\n", cmd);
                return false;
            }
            a->pos[a->npos++] = s;
            continue;
        }
        for (k = 0; opts[k].name != NULL; k++) {
            if (strcmp(opts[k].name, s) == 0) {
                break;
            }
        }
        if (opts[k].name == NULL) {
            fprintf(stderr, "tsmctl %s: unknown option '%s'\n", cmd, s);
            return false;
        }
        if (!opts[k].repeat && ctl_get(a, s) != NULL) {
            fprintf(stderr, "tsmctl %s: option %s given twice\n", cmd, s);
            return false;
        }
        if (a->nopt == CTL_MAX_ARGS) {
            fprintf(stderr, "tsmctl %s: too many options\n", cmd);
            return false;
        }
        a->opt[a->nopt] = s;
        a->val[a->nopt] = NULL;
        if (opts[k].has_arg) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tsmctl %s: %s needs a value\n", cmd, s);
                return false;
            }
            a->val[a->nopt] = argv[++i];
        }
        a->nopt++;
    }
    return true;
}

static int ctl_help(const char *cmd, bool to_err)
{
    size_t i;

    for (i = 0; i < sizeof(ctl_helps) / sizeof(ctl_helps[0]); i++) {
        if (strcmp(ctl_helps[i].name, cmd) == 0) {
            fputs(ctl_helps[i].text, to_err ? stderr : stdout);
            return to_err ? CTL_USAGE : CTL_OK;
        }
    }
    fputs(ctl_usage, to_err ? stderr : stdout);
    return to_err ? CTL_USAGE : CTL_OK;
}

/* ---- profile and client ------------------------------------------------- */

struct ctl_profile {
    const char *want;
    struct tsm_client_profile f; /* the file's values, then the overrides */
};

#define CTL_PROFILE_FILE_MAX ((size_t)1024 * 1024)

/* Reads and parses the profile file f (path for messages) into p. */
static int ctl_profile_read(FILE *f, const char *path, struct ctl_profile *p)
{
    char *text = malloc(CTL_PROFILE_FILE_MAX + 1);
    size_t len;
    size_t line = 0;
    const char *why = NULL;
    ot_err err;

    if (text == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    len = fread(text, 1, CTL_PROFILE_FILE_MAX + 1, f);
    if (ferror(f)) {
        free(text);
        return ctl_fail(CTL_USAGE, "cannot read %s: %s", path, strerror(errno));
    }
    if (len > CTL_PROFILE_FILE_MAX) {
        free(text);
        return ctl_fail(CTL_USAGE, "%s: larger than 1 MiB", path);
    }
    err = tsm_client_profile_parse(text, len, p->want, &p->f, &line, &why);
    ot_mem_wipe(text, len);
    free(text);
    if (err != OT_OK) {
        return ctl_fail(err == OT_E_NOMEM ? CTL_LOCAL : CTL_USAGE, "%s:%zu: %s", path, line, why);
    }
    return CTL_OK;
}

/* A profile file holding a token is a secret, like an ssh key: warn (and
 * go on) when users other than its owner may read it, or change it (its
 * url, so that the token goes elsewhere). f: the file as opened, so the
 * mode checked is the mode of the file read. */
static void ctl_profile_mode_check(FILE *f, const char *path)
{
    struct stat st;
    bool rd;
    bool wr;

    if (fstat(fileno(f), &st) != 0) {
        return;
    }
    rd = (st.st_mode & (S_IRGRP | S_IROTH)) != 0;
    wr = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
    if (!rd && !wr) {
        return;
    }
    fprintf(stderr,
            "tsmctl: warning: %s holds an API token and is %s by other users (mode %04o);"
            " run: chmod 600 %s\n",
            path,
            rd && wr ? "readable and writable"
            : rd     ? "readable"
                     : "writable",
            (unsigned)(st.st_mode & 07777), path);
}

/* Reads the profile file (if any) and applies environment and options. */
static int ctl_profile_load(const struct ctl_args *g, struct ctl_profile *p)
{
    char path[CTL_VALUE_MAX];
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    const char *v;
    FILE *f = NULL;
    int rc = CTL_OK;
    bool named;

    memset(p, 0, sizeof(*p));
    p->want = ctl_get(g, "--profile");
    if (p->want == NULL) {
        p->want = getenv("OPENTSM_PROFILE");
    }
    named = p->want != NULL;
    if (p->want == NULL) {
        p->want = "default";
    }
    if (xdg != NULL && xdg[0] != '\0') {
        snprintf(path, sizeof(path), "%s/opentsm/config", xdg);
    } else {
        snprintf(path, sizeof(path), "%s/.config/opentsm/config", home != NULL ? home : ".");
    }
    /* No file is no profile when none was asked for: the options and the
     * environment may say everything. */
    f = fopen(path, "r");
    if (f == NULL && (named || errno != ENOENT)) {
        return ctl_fail(CTL_USAGE, "cannot open %s: %s", path, strerror(errno));
    }
    if (f != NULL) {
        rc = ctl_profile_read(f, path, p);
        if (p->f.has_token) {
            ctl_profile_mode_check(f, path);
        }
        fclose(f);
    }
    if (rc != CTL_OK) {
        return rc;
    }
    if (named && !p->f.found) {
        return ctl_fail(CTL_USAGE, "no [profile %s] in %s", p->want, path);
    }
    if ((v = getenv("OPENTSM_URL")) != NULL) {
        snprintf(p->f.url, sizeof(p->f.url), "%s", v);
    }
    if ((v = getenv("OPENTSM_TOKEN")) != NULL) {
        snprintf(p->f.token, sizeof(p->f.token), "%s", v);
    }
    if ((v = ctl_get(g, "--url")) != NULL) {
        snprintf(p->f.url, sizeof(p->f.url), "%s", v);
    }
    if ((v = ctl_get(g, "--token")) != NULL) {
        snprintf(p->f.token, sizeof(p->f.token), "%s", v);
    }
    if ((v = ctl_get(g, "--ca")) != NULL) {
        snprintf(p->f.ca, sizeof(p->f.ca), "%s", v);
    }
    if ((v = ctl_get(g, "--cert")) != NULL) {
        snprintf(p->f.cert, sizeof(p->f.cert), "%s", v);
    }
    if ((v = ctl_get(g, "--key")) != NULL) {
        snprintf(p->f.key, sizeof(p->f.key), "%s", v);
    }
    if (p->f.url[0] == '\0' && ctl_get(g, "--url") == NULL && getenv("OPENTSM_URL") == NULL) {
        snprintf(p->f.url, sizeof(p->f.url), "%s", "https://127.0.0.1:8443");
    }
    return CTL_OK;
}

static int ctl_client(const struct ctl_profile *p, struct tsm_client **out)
{
    struct tsm_client_cfg cc;
    struct tsm_client_err e;

    memset(&cc, 0, sizeof(cc));
    cc.url = p->f.url;
    cc.token = p->f.token[0] ? p->f.token : NULL;
    cc.ca_file = p->f.ca[0] ? p->f.ca : NULL;
    cc.client_cert = p->f.cert[0] ? p->f.cert : NULL;
    cc.client_key = p->f.key[0] ? p->f.key : NULL;
    cc.timeout_ms = 300000;
    cc.max_body = (size_t)64 * 1024 * 1024;
    if (tsm_client_new(&cc, out, &e) != OT_OK) {
        return ctl_client_fail("", &e);
    }
    return CTL_OK;
}

/* ---- output ------------------------------------------------------------- */

static void ctl_print_json(const json_t *j)
{
    ctl_print_json_to(stdout, j);
}

/* Text of member key of o for tables, escaped: strings, integers in decimal,
 * null as "-", arrays and objects as ASCII JSON. Returns the width in
 * characters. */
static size_t ctl_field(const json_t *o, const char *key, char *out, size_t cap)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    char tmp[64];

    if (v == NULL || json_is_null(v)) {
        return ctl_esc("-", 1, out, cap);
    }
    if (json_is_string(v)) {
        return ctl_esc(json_string_value(v), json_string_length(v), out, cap);
    }
    if (json_is_integer(v)) {
        snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(v));
    } else if (json_is_true(v)) {
        snprintf(tmp, sizeof(tmp), "true");
    } else if (json_is_false(v)) {
        snprintf(tmp, sizeof(tmp), "false");
    } else {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
        size_t w = ctl_esc(s != NULL ? s : "?", s != NULL ? strlen(s) : 1, out, cap);
        free(s);
        return w;
    }
    return ctl_esc(tmp, strlen(tmp), out, cap);
}

/* Aligned table of row objects with the given columns. */
struct ctl_table {
    const char *const *cols;
    size_t ncols;
    size_t width[CTL_TABLE_COLS];
    json_t *rows; /* array of the row objects */
};

static void ctl_table_init(struct ctl_table *t, const char *const *cols, size_t ncols)
{
    size_t i;

    memset(t, 0, sizeof(*t));
    t->cols = cols;
    t->ncols = ncols;
    for (i = 0; i < ncols; i++) {
        t->width[i] = strlen(cols[i]);
    }
    t->rows = json_arr_new();
}

/* Adds o (borrowed) as a row. */
static void ctl_table_add(struct ctl_table *t, const json_t *o)
{
    char buf[CTL_VALUE_MAX];
    size_t i;

    if (t->rows == NULL) {
        return;
    }
    for (i = 0; i < t->ncols; i++) {
        size_t w = ctl_field(o, t->cols[i], buf, sizeof(buf));
        if (w > t->width[i]) {
            t->width[i] = w;
        }
    }
    (void)json_push(t->rows, json_incref((json_t *)o));
}

static void ctl_cell(const char *s, size_t w, size_t width, bool last)
{
    fputs(s, stdout);
    if (last) {
        fputc('\n', stdout);
        return;
    }
    for (; w < width + 2; w++) {
        fputc(' ', stdout);
    }
}

/* Prints the table (with --json: the rows as one JSON array) and frees it. */
static void ctl_table_print(struct ctl_table *t)
{
    char buf[CTL_VALUE_MAX];
    size_t r;
    size_t i;

    if (g_json) {
        if (t->rows != NULL) {
            ctl_print_json(t->rows);
        } else {
            puts("[]");
        }
    } else if (t->rows != NULL) {
        for (i = 0; i < t->ncols; i++) {
            ctl_cell(t->cols[i], strlen(t->cols[i]), t->width[i], i + 1 == t->ncols);
        }
        for (r = 0; r < json_array_size(t->rows); r++) {
            for (i = 0; i < t->ncols; i++) {
                size_t w = ctl_field(json_at(t->rows, r), t->cols[i], buf, sizeof(buf));
                ctl_cell(buf, w, t->width[i], i + 1 == t->ncols);
            }
        }
    }
    json_free(t->rows);
    t->rows = NULL;
}

/* One object as "key  value" lines, or one JSON document. */
static void ctl_print_obj(const json_t *o)
{
    const char *key;
    json_t *v;
    char buf[CTL_VALUE_MAX];
    char kbuf[256];
    size_t w = 0;

    if (g_json) {
        ctl_print_json(o);
        return;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        size_t kw = ctl_esc(key, strlen(key), kbuf, sizeof(kbuf));
        if (kw > w) {
            w = kw;
        }
    }
    json_object_foreach((json_t *)o, key, v)
    {
        size_t kw = ctl_esc(key, strlen(key), kbuf, sizeof(kbuf));
        (void)ctl_field(o, key, buf, sizeof(buf));
        ctl_cell(kbuf, kw, w, false);
        printf("%s\n", buf);
    }
}

/* ---- se import ---------------------------------------------------------- */

static int ctl_read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    size_t got;
    int rc;

    *data = NULL;
    *len = 0;
    if (f == NULL) {
        return ctl_fail(CTL_LOCAL, "cannot open %s: %s", path, strerror(errno));
    }
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || (size_t)st.st_size > CTL_FILE_MAX) {
        fclose(f);
        return ctl_fail(CTL_LOCAL, "cannot read %s: not a regular file of at most 1 GiB", path);
    }
    *data = malloc((size_t)st.st_size + 1);
    if (*data == NULL) {
        fclose(f);
        return ctl_fail(CTL_LOCAL, "%s: out of memory", path);
    }
    got = fread(*data, 1, (size_t)st.st_size, f);
    rc = ferror(f) ? errno : 0;
    fclose(f);
    if (got != (size_t)st.st_size) {
        free(*data);
        *data = NULL;
        return ctl_fail(CTL_LOCAL, "cannot read %s: %s", path,
                        rc != 0 ? strerror(rc) : "the file changed while read");
    }
    (*data)[got] = '\0';
    *len = got;
    return CTL_OK;
}

/* Puts the secret in file (trailing newlines dropped) into body as name;
 * the read copy is wiped. */
static int ctl_put_file_secret(json_t *body, const char *name, const char *file)
{
    char *sec = NULL;
    size_t sl = 0;
    ot_err err;
    int rc = ctl_read_file(file, &sec, &sl);

    if (rc != CTL_OK) {
        return rc;
    }
    while (sl > 0 && (sec[sl - 1] == '\n' || sec[sl - 1] == '\r')) {
        sec[--sl] = '\0';
    }
    err = json_put_strn(body, name, sec, sl);
    ot_mem_wipe(sec, sl);
    free(sec);
    return err == OT_OK ? CTL_OK : ctl_fail(CTL_LOCAL, "%s: the secret is not text", file);
}

struct ctl_import {
    struct tsm_client *c;
    char idem_base[40];
    size_t total_rows; /* rows in the file */
    size_t sent_rows;
    size_t chunk;
    size_t answered; /* chunks the server answered */
    size_t rows;
    size_t imported;
    size_t unchanged;
    size_t rejected;
    json_t *rejected_list;
    bool tty;
};

static void ctl_progress(const struct ctl_import *im)
{
    const int width = 40;
    int filled;
    double frac;

    if (!im->tty || g_json) {
        return;
    }
    frac = im->total_rows ? (double)im->sent_rows / (double)im->total_rows : 1.0;
    filled = (int)(frac * width);
    fprintf(stderr, "\rimport [%.*s%*s] %3d%% %zu/%zu rows, %zu rejected", filled,
            "########################################", width - filled, "", (int)(frac * 100.0),
            im->sent_rows, im->total_rows, im->rejected);
    fflush(stderr);
}

static size_t ctl_count(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (size_t)json_integer_value(v) : 0;
}

/* Sends one chunk (first_row: file row number of its first data row; nrows
 * 0 for a file without data rows) and adds its report to the totals. */
static int ctl_import_chunk(struct ctl_import *im, const char *ctype, const void *body, size_t len,
                            size_t nrows, size_t first_row)
{
    char key[80];
    char where[96];
    struct tsm_client_err e;
    json_t *rep = NULL;
    const json_t *rej;
    size_t i;

    snprintf(key, sizeof(key), "import-%s-%zu-%zu", im->idem_base, first_row, nrows);
    if (tsm_client_se_import(im->c, ctype, body, len, key, &rep, &e) != OT_OK) {
        if (im->tty && !g_json) {
            fputc('\n', stderr);
        }
        if (nrows > 0) {
            snprintf(where, sizeof(where), "import chunk %zu (rows %zu..%zu): ", im->chunk,
                     first_row, first_row + nrows - 1);
        } else {
            snprintf(where, sizeof(where), "import (header only): ");
        }
        return ctl_client_fail(where, &e);
    }
    im->answered++;
    im->rows += ctl_count(rep, "rows");
    im->imported += ctl_count(rep, "imported");
    im->unchanged += ctl_count(rep, "unchanged");
    im->rejected += ctl_count(rep, "rejected_count");
    rej = json_object_get(rep, "rejected");
    for (i = 0; rej != NULL && json_at(rej, i) != NULL; i++) {
        json_t *o = json_deep_copy(json_at(rej, i));
        if (o == NULL || !json_is_object(o)) {
            json_free(o);
            continue;
        }
        /* Row numbers in the report count from the file's first data row. */
        json_object_set_new(o, "row",
                            json_integer((json_int_t)first_row - 1
                                         + json_integer_value(json_object_get(o, "row"))));
        (void)json_push(im->rejected_list, o);
    }
    json_free(rep);
    im->sent_rows += nrows;
    im->chunk++;
    ctl_progress(im);
    return CTL_OK;
}

static int ctl_import_csv(struct ctl_import *im, const char *file, const char *data, size_t len,
                          size_t chunk_rows)
{
    struct tsm_csv csv;
    struct tsm_csv_rec *rec = malloc(sizeof(*rec));
    struct ot_buf body;
    size_t hdr_len;
    size_t start;
    size_t n = 0;
    size_t first_row = 1;
    size_t row = 0;
    bool end = false;
    int rc = CTL_OK;
    ot_err err;

    ot_buf_init(&body, CTL_CHUNK_BYTES * 2);
    if (rec == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    /* Count the rows first for the progress bar (and check the syntax). */
    tsm_csv_init(&csv, data, len);
    for (;;) {
        err = tsm_csv_next(&csv, rec, &end);
        if (err == OT_E_LIMIT && row == 0) {
            rc = ctl_fail(CTL_LOCAL,
                          "%s: line %zu: header over %zu bytes of field text or %zu fields", file,
                          csv.line, TSM_CSV_REC_MAX, TSM_CSV_MAX_FIELDS);
            goto out;
        }
        /* A data row over a cap is the server's to reject (that row only):
         * the reader has skipped it to its end, so it is sent as it is. */
        if (err != OT_OK && err != OT_E_LIMIT) {
            rc = ctl_fail(CTL_LOCAL,
                          "%s: line %zu: malformed CSV (a quote inside an unquoted field, text "
                          "after a closing quote, an unterminated quote or a bare CR)",
                          file, csv.line);
            goto out;
        }
        if (end) {
            break;
        }
        row++;
    }
    if (row == 0) {
        rc = ctl_fail(CTL_LOCAL, "%s: the CSV file has no header line", file);
        goto out;
    }
    im->total_rows = row - 1;
    tsm_csv_init(&csv, data, len);
    (void)tsm_csv_next(&csv, rec, &end);
    hdr_len = len - csv.rd.left;
    start = hdr_len;
    ctl_progress(im);
    if (im->total_rows == 0) {
        /* Header only: the server still checks the columns. */
        if (ot_buf_append(&body, data, hdr_len) != OT_OK) {
            rc = ctl_fail(CTL_LOCAL, "out of memory");
            goto out;
        }
        rc = ctl_import_chunk(im, "text/csv", body.data, body.len, 0, 1);
        goto out;
    }
    for (;;) {
        size_t before = len - csv.rd.left;
        (void)tsm_csv_next(&csv, rec, &end);
        size_t after = len - csv.rd.left;
        bool full =
            !end && (n == chunk_rows || (n > 0 && after - start + hdr_len > CTL_CHUNK_BYTES));
        if ((end || full) && n > 0) {
            ot_buf_reset(&body);
            if (ot_buf_append(&body, data, hdr_len) != OT_OK
                || (data[hdr_len - 1] != '\n' && ot_buf_append(&body, "\n", 1) != OT_OK)
                || ot_buf_append(&body, data + start, before - start) != OT_OK) {
                rc = ctl_fail(CTL_LOCAL, "out of memory");
                goto out;
            }
            rc = ctl_import_chunk(im, "text/csv", body.data, body.len, n, first_row);
            if (rc != CTL_OK) {
                goto out;
            }
            first_row += n;
            n = 0;
            start = before;
        }
        if (end) {
            break;
        }
        n++;
    }
out:
    ot_buf_free(&body);
    free(rec);
    return rc;
}

static int ctl_import_json(struct ctl_import *im, const char *file, const char *data, size_t len,
                           size_t chunk_rows)
{
    struct json_err jerr;
    json_t *doc = NULL;
    json_t *chunk = NULL;
    size_t i;
    size_t n;
    size_t total;
    int rc = CTL_OK;

    memset(&jerr, 0, sizeof(jerr));
    if (json_parse(data, len, len, &doc, &jerr) != OT_OK || !json_is_array(doc)) {
        json_free(doc);
        return ctl_fail(CTL_LOCAL, "%s: the JSON file must be an array of rows: %s", file,
                        jerr.message[0] ? jerr.message : "it is not an array");
    }
    total = json_array_size(doc);
    im->total_rows = total;
    ctl_progress(im);
    if (total == 0) {
        rc = ctl_import_chunk(im, "application/json", "[]", 2, 0, 1);
    }
    for (i = 0; i < total; i += n) {
        char *s = NULL;
        size_t slen = 0;
        size_t k;
        chunk = json_arr_new();
        if (chunk == NULL) {
            rc = ctl_fail(CTL_LOCAL, "out of memory");
            break;
        }
        for (n = 0; n < chunk_rows && i + n < total; n++) {
            (void)json_push(chunk, json_incref((json_t *)json_at(doc, i + n)));
        }
        /* Keep chunks under the byte cap by halving when needed. */
        for (;;) {
            if (json_serialize(chunk, &s, &slen) != OT_OK) {
                rc = ctl_fail(CTL_LOCAL, "out of memory");
                break;
            }
            if (slen <= CTL_CHUNK_BYTES || n == 1) {
                break;
            }
            free(s);
            s = NULL;
            for (k = n / 2; k < n; k++) {
                json_array_remove(chunk, n / 2);
            }
            n = n / 2;
        }
        if (rc == CTL_OK) {
            rc = ctl_import_chunk(im, "application/json", s, slen, n, i + 1);
        }
        free(s);
        json_free(chunk);
        chunk = NULL;
        if (rc != CTL_OK) {
            break;
        }
    }
    json_free(doc);
    return rc;
}

static void ctl_import_report(const struct ctl_import *im)
{
    size_t i;

    if (g_json) {
        json_t *o = json_obj_new();
        if (o != NULL && json_put_int(o, "rows", (int64_t)im->rows) == OT_OK
            && json_put_int(o, "imported", (int64_t)im->imported) == OT_OK
            && json_put_int(o, "unchanged", (int64_t)im->unchanged) == OT_OK
            && json_put_int(o, "rejected_count", (int64_t)im->rejected) == OT_OK
            && json_put(o, "rejected", json_incref(im->rejected_list)) == OT_OK) {
            ctl_print_json(o);
        }
        json_free(o);
        return;
    }
    printf("rows %zu, imported %zu, unchanged %zu, rejected %zu\n", im->rows, im->imported,
           im->unchanged, im->rejected);
    if (json_array_size(im->rejected_list) > 0) {
        static const char *const cols[] = {"row", "field", "message"};
        struct ctl_table t;
        ctl_table_init(&t, cols, 3);
        for (i = 0; i < json_array_size(im->rejected_list); i++) {
            ctl_table_add(&t, json_at(im->rejected_list, i));
        }
        ctl_table_print(&t);
    }
}

static int ctl_se_import(struct tsm_client *c, const struct ctl_args *a)
{
    const char *file = a->pos[0];
    const char *fmt = ctl_get(a, "--format");
    const char *chunk_s = ctl_get(a, "--chunk");
    struct ctl_import im;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char *data = NULL;
    size_t len = 0;
    size_t chunk_rows = CTL_CHUNK_ROWS;
    size_t i;
    bool csv;
    int rc;
    const char *dot = strrchr(file, '.');

    if (fmt == NULL) {
        fmt = dot != NULL && strcmp(dot, ".json") == 0 ? "json" : "csv";
    }
    if (strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0) {
        return ctl_fail(CTL_USAGE, "se import: --format is csv or json");
    }
    csv = strcmp(fmt, "csv") == 0;
    if (chunk_s != NULL) {
        char *end = NULL;
        unsigned long v = strtoul(chunk_s, &end, 10);
        if (chunk_s[0] < '1' || chunk_s[0] > '9' || *end != '\0' || v > 100000) {
            return ctl_fail(CTL_USAGE, "se import: --chunk is 1..100000");
        }
        chunk_rows = v;
    }
    rc = ctl_read_file(file, &data, &len);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&im, 0, sizeof(im));
    im.c = c;
    im.tty = isatty(STDERR_FILENO) != 0;
    im.rejected_list = json_arr_new();
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || im.rejected_list == NULL) {
        free(data);
        json_free(im.rejected_list);
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    for (i = 0; i < 16; i++) {
        snprintf(im.idem_base + 2 * i, 3, "%02x", md[i]);
    }
    rc = csv ? ctl_import_csv(&im, file, data, len, chunk_rows)
             : ctl_import_json(&im, file, data, len, chunk_rows);
    if (im.tty && !g_json && rc == CTL_OK) {
        fputc('\n', stderr);
    }
    free(data);
    /* A report only of what the server answered: nothing when the file
     * could not be read or parsed, or the first chunk failed; with --json
     * only on success (stdout holds one document or nothing). */
    if (im.answered > 0 && (rc == CTL_OK || !g_json)) {
        ctl_import_report(&im);
    }
    json_free(im.rejected_list);
    if (rc != CTL_OK) {
        return rc;
    }
    return im.rejected > 0 ? CTL_NEGATIVE : CTL_OK;
}

/* ---- lists -------------------------------------------------------------- */

enum ctl_list_kind {
    CTL_L_SE,
    CTL_L_SD,
    CTL_L_PRINCIPAL,
    CTL_L_TOKEN,
    CTL_L_AUDIT,
    CTL_L_MNO_DEVICES,
    CTL_L_MNO_JOBS,
    CTL_L_MNO_ALERTS,
};

struct ctl_list_q {
    enum ctl_list_kind kind;
    struct mno_client *m; /* the mno lists */
    const char *a;        /* se: mno; sd: cin */
    const char *b;        /* se: type */
    int64_t id;           /* token: principal_id */
    struct tsm_client_audit_filter audit;
};

static ot_err ctl_fetch(struct tsm_client *c, const struct ctl_list_q *q,
                        const struct tsm_client_pg *pg, struct tsm_client_page *p,
                        struct tsm_client_err *e)
{
    switch (q->kind) {
    case CTL_L_SE:
        return tsm_client_se_list(c, q->a, q->b, pg, p, e);
    case CTL_L_SD:
        return tsm_client_sd_list(c, q->a, pg, p, e);
    case CTL_L_PRINCIPAL:
        return tsm_client_principal_list(c, pg, p, e);
    case CTL_L_TOKEN:
        return tsm_client_token_list(c, q->id, pg, p, e);
    case CTL_L_MNO_DEVICES:
        return mno_client_devices(q->m, pg, p, e);
    case CTL_L_MNO_JOBS:
        return mno_client_jobs(q->m, pg, p, e);
    case CTL_L_MNO_ALERTS:
        return mno_client_alerts(q->m, pg, p, e);
    case CTL_L_AUDIT:
    default:
        return tsm_client_audit_list(c, &q->audit, pg, p, e);
    }
}

/* Follows the cursors of a list (stops after max items, 0: all) and prints
 * it: a table once the first page has arrived (what arrived, then the error
 * if a later page fails), or with --json one array, only when every page
 * arrived. */
static int ctl_list(struct tsm_client *c, const struct ctl_list_q *q, const char *const *cols,
                    size_t ncols, size_t max)
{
    char cursor[JSON_CURSOR_MAX + 1] = "";
    struct tsm_client_page page;
    struct tsm_client_err e;
    struct tsm_client_pg pg;
    struct ctl_table t;
    size_t got = 0;
    size_t pages = 0;
    bool failed = false;

    ctl_table_init(&t, cols, ncols);
    if (t.rows == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    for (;;) {
        size_t i;
        pg.cursor = cursor;
        pg.limit = max == 0 ? 0 : (unsigned)(max - got < 1000 ? max - got : 1000);
        if (ctl_fetch(c, q, &pg, &page, &e) != OT_OK) {
            failed = true;
            break;
        }
        pages++;
        for (i = 0; i < json_array_size(page.items) && (max == 0 || got < max); i++) {
            ctl_table_add(&t, json_at(page.items, i));
            got++;
        }
        snprintf(cursor, sizeof(cursor), "%s", page.next_cursor);
        tsm_client_page_clear(&page);
        if (cursor[0] == '\0' || (max != 0 && got >= max)) {
            break;
        }
    }
    if (!failed || (pages > 0 && !g_json)) {
        ctl_table_print(&t);
    } else {
        json_free(t.rows);
    }
    return failed ? ctl_client_fail("", &e) : CTL_OK;
}

static int ctl_limit(const struct ctl_args *a, size_t *max)
{
    const char *s = ctl_get(a, "--limit");
    char *end = NULL;
    unsigned long v;

    if (s == NULL) {
        return CTL_OK;
    }
    errno = 0;
    v = strtoul(s, &end, 10);
    if (s[0] < '1' || s[0] > '9' || *end != '\0' || errno != 0) {
        return ctl_fail(CTL_USAGE, "--limit must be a positive integer");
    }
    *max = v;
    return CTL_OK;
}

/* ---- other commands ----------------------------------------------------- */

static const char *const ctl_se_cols[] = {"cin",  "se_type",    "mno",        "msisdn",
                                          "imsi", "gp_version", "jc_version", "expiry"};

/* Prints a one-object answer and frees it, or the error; returns the exit code. */
static int ctl_show(ot_err err, json_t **doc, const struct tsm_client_err *e)
{
    if (err != OT_OK) {
        return ctl_client_fail("", e);
    }
    ctl_print_obj(*doc);
    json_free(*doc);
    *doc = NULL;
    return CTL_OK;
}

static int ctl_se_get(struct tsm_client *c, const struct ctl_args *a)
{
    const char *msisdn = ctl_get(a, "--msisdn");
    const char *imsi = ctl_get(a, "--imsi");
    bool id_only = ctl_get(a, "--id-only") != NULL;
    struct tsm_client_err e;
    json_t *doc = NULL;
    const json_t *cin;
    ot_err err;

    if ((msisdn != NULL) + (imsi != NULL) + (a->npos == 1) != 1 || a->npos > 1) {
        return ctl_help("se get", true);
    }
    if (a->npos == 1) {
        err = tsm_client_se_get(c, a->pos[0], &doc, &e);
    } else {
        err = tsm_client_se_find(c, msisdn ? "msisdn" : "imsi", msisdn ? msisdn : imsi, id_only,
                                 &doc, &e);
    }
    if (err != OT_OK || !id_only) {
        return ctl_show(err, &doc, &e);
    }
    cin = json_object_get(doc, "cin");
    if (!json_is_string(cin)) {
        json_free(doc);
        return ctl_fail(CTL_API, "the answer has no cin");
    }
    if (g_json) {
        json_t *o = json_obj_new();
        if (o != NULL && json_put(o, "cin", json_incref((json_t *)cin)) == OT_OK) {
            ctl_print_json(o);
        }
        json_free(o);
    } else {
        char buf[CTL_VALUE_MAX];
        (void)ctl_esc(json_string_value(cin), json_string_length(cin), buf, sizeof(buf));
        printf("%s\n", buf);
    }
    json_free(doc);
    return CTL_OK;
}

static int ctl_se_list(struct tsm_client *c, const struct ctl_args *a)
{
    struct ctl_list_q q;
    size_t max = 0;
    int rc;

    if (a->npos != 0) {
        return ctl_help("se list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&q, 0, sizeof(q));
    q.kind = CTL_L_SE;
    q.a = ctl_get(a, "--mno");
    q.b = ctl_get(a, "--type");
    return ctl_list(c, &q, ctl_se_cols, 8, max);
}

static int ctl_sd_list(struct tsm_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"aid", "owner", "privileges", "lcs"};
    struct ctl_list_q q;
    size_t max = 0;
    int rc;

    if (a->npos != 1) {
        return ctl_help("se sd list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&q, 0, sizeof(q));
    q.kind = CTL_L_SD;
    q.a = a->pos[0];
    return ctl_list(c, &q, cols, 4, max);
}

static int ctl_sd_assign(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_sd_assign sa;
    struct tsm_client_err e;
    json_t *doc = NULL;

    if (a->npos != 1 || ctl_get(a, "--aid") == NULL || ctl_get(a, "--sp") == NULL) {
        return ctl_help("se sd assign", true);
    }
    sa.aid = ctl_get(a, "--aid");
    sa.sp = ctl_get(a, "--sp");
    sa.privileges = ctl_get(a, "--privileges");
    sa.lcs = ctl_get(a, "--lcs");
    return ctl_show(tsm_client_sd_assign(c, a->pos[0], &sa, NULL, &doc, &e), &doc, &e);
}

static int ctl_principal_create(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_principal p;
    struct tsm_client_err e;
    json_t *doc = NULL;
    size_t n;

    if (a->npos != 2) {
        return ctl_help("principal create", true);
    }
    memset(&p, 0, sizeof(p));
    p.kind = a->pos[0];
    p.name = a->pos[1];
    p.display_name = ctl_get(a, "--display-name");
    p.imei = ctl_get(a, "--imei");
    p.imsi = ctl_get(a, "--imsi");
    p.mno = ctl_get(a, "--mno");
    n = ctl_get_all(a, "--msisdn", p.msisdns, TSM_CLIENT_MSISDN_MAX);
    if (n > TSM_CLIENT_MSISDN_MAX) {
        return ctl_fail(CTL_USAGE, "principal create: at most %d --msisdn",
                        (int)TSM_CLIENT_MSISDN_MAX);
    }
    p.n_msisdns = n;
    return ctl_show(tsm_client_principal_create(c, &p, NULL, &doc, &e), &doc, &e);
}

static int ctl_principal_get(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_err e;
    json_t *doc = NULL;
    int64_t id = 0;

    if (a->npos != 1 || !svc_id_parse(a->pos[0], &id)) {
        return ctl_help("principal get", true);
    }
    return ctl_show(tsm_client_principal_get(c, id, &doc, &e), &doc, &e);
}

static int ctl_principal_list(struct tsm_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"id", "kind", "name", "created_at", "disabled"};
    struct ctl_list_q q;
    size_t max = 0;
    int rc;

    if (a->npos != 0) {
        return ctl_help("principal list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    memset(&q, 0, sizeof(q));
    q.kind = CTL_L_PRINCIPAL;
    return ctl_list(c, &q, cols, 5, max);
}

static int ctl_cert_bind(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_err e;
    json_t *doc = NULL;
    int64_t id = 0;

    if (a->npos != 2 || !svc_id_parse(a->pos[0], &id)) {
        return ctl_help("principal bind-cert", true);
    }
    return ctl_show(tsm_client_cert_bind(c, id, a->pos[1], NULL, &doc, &e), &doc, &e);
}

static int ctl_cert_unbind(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_err e;
    json_t *doc = NULL;
    int64_t id = 0;

    if (a->npos != 2 || !svc_id_parse(a->pos[0], &id)) {
        return ctl_help("principal unbind-cert", true);
    }
    return ctl_show(tsm_client_cert_unbind(c, id, a->pos[1], &doc, &e), &doc, &e);
}

static int ctl_token_issue(struct tsm_client *c, const struct ctl_args *a)
{
    const char *pid_s = ctl_get(a, "--principal-id");
    const char *kind = ctl_get(a, "--kind");
    const char *name = ctl_get(a, "--name");
    const char *ttl_s = ctl_get(a, "--ttl-days");
    struct tsm_client_err e;
    json_t *doc = NULL;
    int64_t pid = 0;
    int64_t ttl = 0;
    const json_t *tok;

    if (a->npos != 0 || (pid_s == NULL) == (kind == NULL || name == NULL)) {
        return ctl_help("token issue", true);
    }
    if (pid_s != NULL && !svc_id_parse(pid_s, &pid)) {
        return ctl_help("token issue", true);
    }
    if (ttl_s != NULL) {
        int64_t d = 0;
        if (!svc_id_parse(ttl_s, &d) || d > 3650) {
            return ctl_fail(CTL_USAGE, "token issue: --ttl-days is 1..3650");
        }
        ttl = d * 86400;
    }
    if (pid_s == NULL) {
        struct tsm_client_principal p;
        memset(&p, 0, sizeof(p));
        p.kind = kind;
        p.name = name;
        if (tsm_client_principal_create(c, &p, NULL, &doc, &e) != OT_OK) {
            return ctl_client_fail("", &e);
        }
        const json_t *idv = json_object_get(doc, "id");
        if (!json_is_integer(idv) || json_integer_value(idv) < 1) {
            json_free(doc);
            return ctl_fail(CTL_API, "the principal answer has no id");
        }
        pid = json_integer_value(idv);
        json_free(doc);
        doc = NULL;
    }
    if (tsm_client_token_issue(c, pid, ttl, ctl_get(a, "--label"), &doc, &e) != OT_OK) {
        return ctl_client_fail("", &e);
    }
    tok = json_object_get(doc, "token");
    if (ctl_get(a, "--token-only") != NULL && !g_json) {
        char buf[CTL_VALUE_MAX];
        if (!json_is_string(tok)) {
            json_free(doc);
            return ctl_fail(CTL_API, "the answer has no token");
        }
        (void)ctl_esc(json_string_value(tok), json_string_length(tok), buf, sizeof(buf));
        printf("%s\n", buf);
    } else {
        ctl_print_obj(doc);
    }
    json_free(doc);
    return CTL_OK;
}

static int ctl_token_revoke(struct tsm_client *c, const struct ctl_args *a)
{
    struct tsm_client_err e;
    json_t *doc = NULL;
    int64_t id = 0;

    if (a->npos != 1 || !svc_id_parse(a->pos[0], &id)) {
        return ctl_help("token revoke", true);
    }
    return ctl_show(tsm_client_token_revoke(c, id, &doc, &e), &doc, &e);
}

static int ctl_token_list(struct tsm_client *c, const struct ctl_args *a)
{
    static const char *const cols[] = {"id",         "principal_id", "prefix",      "label",
                                       "expires_at", "revoked_at",   "last_used_at"};
    struct ctl_list_q q;
    const char *pid = ctl_get(a, "--principal-id");
    size_t max = 0;
    int rc;

    memset(&q, 0, sizeof(q));
    q.kind = CTL_L_TOKEN;
    if (a->npos != 0 || (pid != NULL && !svc_id_parse(pid, &q.id))) {
        return ctl_help("token list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    return ctl_list(c, &q, cols, 7, max);
}

static int ctl_audit_verify_print(bool intact, long long checked, long long bad)
{
    if (g_json) {
        printf(intact ? "{\"intact\":true,\"checked\":%lld,\"bad_seq\":null}\n"
                      : "{\"intact\":false,\"checked\":%lld,\"bad_seq\":%lld}\n",
               checked, bad);
    } else if (intact) {
        printf("audit chain intact: %lld rows checked\n", checked);
    } else {
        printf("audit chain BROKEN at row seq=%lld\n", bad);
    }
    return intact ? CTL_OK : CTL_NEGATIVE;
}

static int ctl_audit_verify_db(const char *url)
{
    struct db *db = NULL;
    int64_t bad = 0;
    int64_t checked = 0;
    ot_err err;

    err = db_open(url, NULL, &db);
    if (err != OT_OK) {
        return ctl_fail(CTL_LOCAL, "cannot open %s: %s",
                        strncmp(url, "sqlite:", 7) == 0 ? url : "database", ot_strerror(err));
    }
    err = audit_verify(db, &bad, &checked);
    db_close(db);
    if (err == OT_OK || err == OT_E_CORRUPT) {
        return ctl_audit_verify_print(err == OT_OK, (long long)checked, (long long)bad);
    }
    return ctl_fail(CTL_LOCAL, "audit verify: %s", ot_strerror(err));
}

static int ctl_audit_verify(struct tsm_client *c)
{
    struct tsm_client_err e;
    json_t *doc = NULL;
    const json_t *intact;
    int rc;

    if (tsm_client_audit_verify(c, &doc, &e) != OT_OK) {
        return ctl_client_fail("", &e);
    }
    intact = json_object_get(doc, "intact");
    if (!json_is_boolean(intact)) {
        json_free(doc);
        return ctl_fail(CTL_API, "the audit verify answer has no \"intact\"");
    }
    rc = ctl_audit_verify_print(json_is_true(intact),
                                (long long)json_integer_value(json_object_get(doc, "checked")),
                                (long long)json_integer_value(json_object_get(doc, "bad_seq")));
    json_free(doc);
    return rc;
}

static const char *const ctl_audit_cols[] = {"seq",      "ts_ms",   "principal_name", "action",
                                             "resource", "outcome", "request_id"};

static int ctl_audit_list(struct tsm_client *c, const struct ctl_args *a)
{
    const char *pid = ctl_get(a, "--principal-id");
    struct ctl_list_q q;
    size_t max = 100;
    int rc;

    memset(&q, 0, sizeof(q));
    q.kind = CTL_L_AUDIT;
    if (a->npos != 0 || (pid != NULL && !svc_id_parse(pid, &q.audit.principal_id))) {
        return ctl_help("audit list", true);
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    q.audit.action = ctl_get(a, "--action");
    q.audit.request_id = ctl_get(a, "--request-id");
    return ctl_list(c, &q, ctl_audit_cols, 7, max);
}

struct ctl_follow {
    size_t max; /* rows to print, 0: no end */
    size_t got;
};

/* One row of the stream, printed at once (the header before the first). */
static bool ctl_follow_row(void *ctx, int64_t seq, const json_t *row)
{
    struct ctl_follow *f = ctx;
    char buf[CTL_VALUE_MAX];
    size_t i;

    (void)seq;
    if (g_json) {
        ctl_print_json(row);
    } else {
        if (f->got == 0) {
            for (i = 0; i < 7; i++) {
                printf("%s%s", ctl_audit_cols[i], i + 1 < 7 ? "  " : "\n");
            }
        }
        for (i = 0; i < 7; i++) {
            (void)ctl_field(row, ctl_audit_cols[i], buf, sizeof(buf));
            printf("%s%s", buf, i + 1 < 7 ? "  " : "\n");
        }
    }
    fflush(stdout);
    f->got++;
    return f->max == 0 || f->got < f->max;
}

static int ctl_audit_follow(struct tsm_client *c, const struct ctl_args *a)
{
    const char *from_s = ctl_get(a, "--from");
    struct ctl_follow f;
    struct tsm_client_err e;
    int64_t from = -1;
    int rc;

    memset(&f, 0, sizeof(f));
    if (a->npos != 0) {
        return ctl_help("audit follow", true);
    }
    if (from_s != NULL && strcmp(from_s, "0") == 0) {
        from = 0;
    } else if (from_s != NULL && !svc_id_parse(from_s, &from)) {
        return ctl_fail(CTL_USAGE, "audit follow: --from is an audit seq (0: the whole log)");
    }
    rc = ctl_limit(a, &f.max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (tsm_client_audit_follow(c, from, ctl_follow_row, &f, &e) != OT_OK) {
        return ctl_client_fail("", &e);
    }
    return CTL_OK;
}

/* ---- mno ---------------------------------------------------------------- */

/* "mno devices" and the other mno commands: the word after "mno". */
static int ctl_mno(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    static const char *const dev_cols[] = {"id",    "msisdn",        "imei",     "imsi",
                                           "state", "location_area", "last_seen"};
    static const char *const job_cols[] = {"id",       "device",   "kind",  "state",
                                           "priority", "attempts", "reason"};
    static const char *const alert_cols[] = {"id",       "cin",     "kvn",
                                             "failures", "cleared", "created_at"};
    const char *inst = ctl_get(a, "--instance");
    char help[80];
    char idem[TSM_CLIENT_IDEM_KEY_SIZE];
    struct mno_client *m = NULL;
    struct tsm_client_err e;
    struct ctl_list_q q;
    json_t *doc = NULL;
    size_t max = 0;
    ot_err err;
    int rc;

    snprintf(help, sizeof(help), "mno %s", sub);
    if (tsm_client_idem_key(idem) != OT_OK) {
        return ctl_fail(CTL_LOCAL, "no random bytes for an Idempotency-Key");
    }
    if (mno_client_new(c, inst != NULL ? inst : "", &m) != OT_OK) {
        return ctl_fail(CTL_USAGE,
                        "mno: --instance is 1 to 15 of a-z and 0-9, starting with a letter");
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        mno_client_free(m);
        return rc;
    }
    memset(&q, 0, sizeof(q));
    q.m = m;
    if (strcmp(sub, "devices") == 0 || strcmp(sub, "jobs") == 0 || strcmp(sub, "alerts") == 0) {
        if (a->npos != 0) {
            rc = ctl_help(help, true);
        } else if (sub[0] == 'd') {
            q.kind = CTL_L_MNO_DEVICES;
            rc = ctl_list(c, &q, dev_cols, 7, max);
        } else if (sub[0] == 'j') {
            q.kind = CTL_L_MNO_JOBS;
            rc = ctl_list(c, &q, job_cols, 7, max);
        } else {
            q.kind = CTL_L_MNO_ALERTS;
            rc = ctl_list(c, &q, alert_cols, 6, max);
        }
        mno_client_free(m);
        return rc;
    }
    if (strcmp(sub, "status") == 0) {
        const char *by[] = {"--msisdn", "--imsi", "--imei"};
        const char *val = NULL;
        int n = 0;
        for (int i = 0; i < 3; i++) {
            if (ctl_get(a, by[i]) != NULL) {
                val = ctl_get(a, by[i]);
                rc = i;
                n++;
            }
        }
        if (n != 1 || a->npos != 0) {
            mno_client_free(m);
            return ctl_help(help, true);
        }
        err = mno_client_status(m, by[rc] + 2, val, &doc, &e);
    } else if (strcmp(sub, "enrol") == 0) {
        const char *cins[TSM_CLIENT_MSISDN_MAX];
        int64_t pid = 0;
        size_t ncin = ctl_get_all(a, "--cin", cins, TSM_CLIENT_MSISDN_MAX);
        json_t *arr = NULL;
        if (a->npos != 1 || !svc_id_parse(a->pos[0], &pid) || ctl_get(a, "--msisdn") == NULL
            || ncin > TSM_CLIENT_MSISDN_MAX) {
            mno_client_free(m);
            return ctl_help(help, true);
        }
        if (ncin > 0) {
            arr = json_arr_new();
            for (size_t i = 0; arr != NULL && i < ncin; i++) {
                if (json_push(arr, json_string(cins[i])) != OT_OK) {
                    json_free(arr);
                    arr = NULL;
                }
            }
            if (arr == NULL) {
                mno_client_free(m);
                return ctl_fail(CTL_LOCAL, "out of memory");
            }
        }
        err = mno_client_enrol(m, pid, ctl_get(a, "--msisdn"), arr, idem, &doc, &e);
        json_free(arr);
    } else if (strcmp(sub, "submit") == 0) {
        char *data = NULL;
        size_t len = 0;
        json_t *job = NULL;
        struct json_err jerr;
        if (a->npos != 1) {
            mno_client_free(m);
            return ctl_help(help, true);
        }
        rc = ctl_read_file(a->pos[0], &data, &len);
        if (rc != CTL_OK) {
            mno_client_free(m);
            return rc;
        }
        memset(&jerr, 0, sizeof(jerr));
        if (json_parse(data, len, len, &job, &jerr) != OT_OK || !json_is_object(job)) {
            free(data);
            json_free(job);
            mno_client_free(m);
            return ctl_fail(CTL_LOCAL, "%s: the job must be one JSON object: %s", a->pos[0],
                            jerr.message[0] ? jerr.message : "it is not an object");
        }
        free(data);
        err = mno_client_job_submit(m, job, idem, &doc, &e);
        json_free(job);
    } else if (strcmp(sub, "resolve") == 0) {
        if (a->npos != 2 || (strcmp(a->pos[1], "requeue") != 0 && strcmp(a->pos[1], "fail") != 0)) {
            mno_client_free(m);
            return ctl_help(help, true);
        }
        err = mno_client_job_resolve(m, a->pos[0], a->pos[1], &doc, &e);
    } else {
        if (a->npos != 1) {
            mno_client_free(m);
            return ctl_help(help, true);
        }
        if (strcmp(sub, "device") == 0) {
            err = mno_client_device(m, a->pos[0], &doc, &e);
        } else if (strcmp(sub, "job") == 0) {
            err = mno_client_job(m, a->pos[0], &doc, &e);
        } else if (strcmp(sub, "cancel") == 0) {
            err = mno_client_job_cancel(m, a->pos[0], &doc, &e);
        } else {
            err = mno_client_alert_clear(m, a->pos[0], &doc, &e);
        }
    }
    mno_client_free(m);
    return ctl_show(err, &doc, &e);
}

/* ---- pay ---------------------------------------------------------------- */

/* The key of a key file: hex, surrounding white space ignored (wiped). */
static int ctl_pay_key(const char *path, char *hex, size_t cap)
{
    char *data = NULL;
    size_t len = 0;
    size_t b = 0;
    int rc = ctl_read_file(path, &data, &len);

    if (rc != CTL_OK) {
        return rc;
    }
    while (len > 0 && isspace((unsigned char)data[len - 1])) {
        len--;
    }
    while (b < len && isspace((unsigned char)data[b])) {
        b++;
    }
    if (len - b == 0 || len - b >= cap) {
        ot_mem_wipe(data, len);
        free(data);
        return ctl_fail(CTL_LOCAL, "%s: not a key in hex", path);
    }
    memcpy(hex, data + b, len - b);
    hex[len - b] = '\0';
    ot_mem_wipe(data, len);
    free(data);
    return CTL_OK;
}

/* "pay sp-register" and the other pay commands: the word after "pay". */
static int ctl_pay(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    char help[80];
    char path[160];
    char idem[TSM_CLIENT_IDEM_KEY_SIZE];
    char key[72];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    const char *method = "GET";
    const char *name = a->npos == 1 ? a->pos[0] : NULL;
    size_t max = 0;
    int64_t pid = 0;
    ot_err err;
    int rc;

    snprintf(help, sizeof(help), "pay %s", sub);
    if (tsm_client_idem_key(idem) != OT_OK) {
        return ctl_fail(CTL_LOCAL, "no random bytes for an Idempotency-Key");
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (strcmp(sub, "sps") == 0 || strcmp(sub, "clients") == 0) {
        if (a->npos != 0) {
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/pay/v1/%s?limit=%zu", sub, max > 0 ? max : (size_t)100);
    } else if (name == NULL || strlen(name) > 32) {
        return ctl_help(help, true);
    } else if (strcmp(sub, "sp") == 0 || strcmp(sub, "client") == 0) {
        snprintf(path, sizeof(path), "/pay/v1/%ss/%s", sub, name);
    } else if (strcmp(sub, "keys") == 0) {
        snprintf(path, sizeof(path), "/pay/v1/sps/%s/keys?limit=%zu", name,
                 max > 0 ? max : (size_t)100);
    } else if (strcmp(sub, "sp-revoke") == 0 || strcmp(sub, "client-revoke") == 0) {
        method = "POST";
        snprintf(path, sizeof(path), "/pay/v1/%s/%s/revoke", sub[0] == 's' ? "sps" : "clients",
                 name);
    } else {
        method = "POST";
        body = json_obj_new();
        if (body == NULL) {
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        if (strcmp(sub, "sp-register") == 0) {
            const char *need[] = {"--kind", "--display-name", "--endpoint", "--pub"};
            const char *member[] = {"kind", "display_name", "endpoint", "pub"};
            snprintf(path, sizeof(path), "/pay/v1/sps");
            err = json_put_str(body, "name", name);
            for (size_t i = 0; i < 4 && err == OT_OK; i++) {
                if (ctl_get(a, need[i]) == NULL) {
                    json_free(body);
                    return ctl_help(help, true);
                }
                err = json_put_str(body, member[i], ctl_get(a, need[i]));
            }
            if (err == OT_OK && ctl_get(a, "--principal-id") != NULL) {
                if (!svc_id_parse(ctl_get(a, "--principal-id"), &pid)) {
                    json_free(body);
                    return ctl_help(help, true);
                }
                err = json_put_int(body, "owner_id", pid);
            }
        } else if (strcmp(sub, "key-deposit") == 0) {
            if (ctl_get(a, "--key-type") == NULL || ctl_get(a, "--key-file") == NULL) {
                json_free(body);
                return ctl_help(help, true);
            }
            rc = ctl_pay_key(ctl_get(a, "--key-file"), key, sizeof(key));
            if (rc != CTL_OK) {
                json_free(body);
                return rc;
            }
            snprintf(path, sizeof(path), "/pay/v1/sps/%s/keys", name);
            err = json_put_str(body, "key_type", ctl_get(a, "--key-type"));
            if (err == OT_OK) {
                err = json_put_str(body, "key", key);
            }
            ot_mem_wipe(key, sizeof(key));
        } else if (strcmp(sub, "client-enrol") == 0) {
            if (!svc_id_parse(ctl_get(a, "--principal-id"), &pid)
                || ctl_get(a, "--dongle-pub") == NULL) {
                json_free(body);
                return ctl_help(help, true);
            }
            snprintf(path, sizeof(path), "/pay/v1/clients");
            err = json_put_str(body, "name", name);
            if (err == OT_OK) {
                err = json_put_str(body, "dongle_pub", ctl_get(a, "--dongle-pub"));
            }
            if (err == OT_OK) {
                err = json_put_int(body, "principal_id", pid);
            }
        } else {
            json_free(body);
            return ctl_help(help, true);
        }
        if (err != OT_OK) {
            json_free(body);
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
    }
    err =
        tsm_client_json(c, method, path, body, strcmp(method, "POST") == 0 ? idem : NULL, &doc, &e);
    json_free(body); /* the key is in it: jansson frees, the text is gone with it */
    return ctl_show(err, &doc, &e);
}

/* ---- cms ---------------------------------------------------------------- */

/* A list answer as a table of cols (one page). */
static int ctl_cms_list(ot_err err, json_t **doc, const struct tsm_client_err *e,
                        const char *const *cols, size_t ncols)
{
    struct ctl_table t;
    const json_t *items;

    if (err != OT_OK) {
        return ctl_client_fail("", e);
    }
    items = json_object_get(*doc, "items");
    ctl_table_init(&t, cols, ncols);
    for (size_t i = 0; i < json_array_size(items); i++) {
        ctl_table_add(&t, json_at(items, i));
    }
    ctl_table_print(&t);
    json_free(*doc);
    *doc = NULL;
    return CTL_OK;
}

/* A card id, issuer or alert id as the API takes them ([A-Za-z0-9._-], 1..64):
 * safe in a path as it is. */
static bool ctl_cms_id_ok(const char *s)
{
    size_t n = 0;

    for (; s != NULL && s[n] != '\0'; n++) {
        char ch = s[n];
        if (n >= 64
            || !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
                 || ch == '.' || ch == '_' || ch == '-')) {
            return false;
        }
    }
    return s != NULL && n > 0;
}

/* A JSON array of the comma-separated words of list. */
static json_t *ctl_csv_array(const char *list)
{
    json_t *arr = json_arr_new();

    for (const char *p = list; arr != NULL && *p != '\0';) {
        const char *e = strchr(p, ',');
        size_t l = e != NULL ? (size_t)(e - p) : strlen(p);
        json_t *x = l > 0 ? json_stringn(p, l) : NULL;
        if (l > 0 && (x == NULL || json_push(arr, x) != OT_OK)) {
            json_free(arr);
            return NULL;
        }
        p += l + (e != NULL ? 1 : 0);
    }
    return arr;
}

/* Puts the option name's integer value as key (absent: nothing). */
static bool ctl_put_opt_int(json_t *o, const struct ctl_args *a, const char *name, const char *key)
{
    const char *v = ctl_get(a, name);
    char *end = NULL;
    long long n;

    if (v == NULL) {
        return true;
    }
    n = strtoll(v, &end, 10);
    return v[0] != '\0' && end != NULL && *end == '\0' && json_put_int(o, key, n) == OT_OK;
}

/* Supervision's rules and decisions, a subscriber's notification settings
 * (docs/cms.md "Supervision and notifications"). */
static int ctl_cms_superv(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    static const char *const rule_cols[] = {"name", "kind", "action", "enabled"};
    static const char *const dec_cols[] = {"id", "card_id", "rule", "action", "outcome", "at"};
    const char *id = a->npos == 1 ? a->pos[0] : NULL;
    char help[80];
    char path[256];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    size_t max = 0;
    ot_err err = OT_OK;
    int rc;

    snprintf(help, sizeof(help), "cms %s", sub);
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (strcmp(sub, "rules") == 0 || strcmp(sub, "decisions") == 0) {
        if (a->npos != 0) {
            return ctl_help(help, true);
        }
        if (sub[0] == 'r') {
            err = tsm_client_json(c, "GET", "/cms/v1/rules", NULL, NULL, &doc, &e);
            return ctl_cms_list(err, &doc, &e, rule_cols, 4);
        }
        snprintf(path, sizeof(path), "/cms/v1/decisions?limit=%zu", max > 0 ? max : (size_t)100);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return ctl_cms_list(err, &doc, &e, dec_cols, 6);
    }
    if (id == NULL || !ctl_cms_id_ok(id)) {
        return ctl_help(help, true);
    }
    if (strcmp(sub, "rule-delete") == 0) {
        snprintf(path, sizeof(path), "/cms/v1/rules/%s", id);
        err = tsm_client_json(c, "DELETE", path, NULL, NULL, &doc, &e);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "notify-show") == 0) {
        snprintf(path, sizeof(path), "/cms/v1/subscribers/%s/notifications", id);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return ctl_show(err, &doc, &e);
    }
    body = json_obj_new();
    if (body == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    if (strcmp(sub, "rule") == 0) {
        const char *m = ctl_get(a, "--merchants");
        if (ctl_get(a, "--kind") == NULL || ctl_get(a, "--action") == NULL) {
            json_free(body);
            return ctl_help(help, true);
        }
        if (json_put_str(body, "kind", ctl_get(a, "--kind")) != OT_OK
            || json_put_str(body, "action", ctl_get(a, "--action")) != OT_OK
            || (ctl_get(a, "--disabled") != NULL && json_put_bool(body, "enabled", false) != OT_OK)
            || !ctl_put_opt_int(body, a, "--max", "max")
            || !ctl_put_opt_int(body, a, "--window-s", "window_s")
            || !ctl_put_opt_int(body, a, "--min-s", "min_s")
            || (m != NULL && json_put(body, "merchants", ctl_csv_array(m)) != OT_OK)) {
            json_free(body);
            return ctl_fail(CTL_LOCAL, "--max, --window-s and --min-s take whole numbers");
        }
        snprintf(path, sizeof(path), "/cms/v1/rules/%s", id);
        err = tsm_client_json(c, "PUT", path, body, NULL, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "notify") == 0) {
        const char *sf = ctl_get(a, "--secret-file");
        const char *ev = ctl_get(a, "--events");
        if ((ctl_get(a, "--email") != NULL
             && json_put_str(body, "email", ctl_get(a, "--email")) != OT_OK)
            || (ctl_get(a, "--webhook") != NULL
                && json_put_str(body, "webhook_url", ctl_get(a, "--webhook")) != OT_OK)
            || (ev != NULL && json_put(body, "events", ctl_csv_array(ev)) != OT_OK)) {
            json_free(body);
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        if (sf != NULL) {
            rc = ctl_put_file_secret(body, "webhook_secret", sf);
            if (rc != CTL_OK) {
                json_free(body);
                return rc;
            }
        }
        snprintf(path, sizeof(path), "/cms/v1/subscribers/%s/notifications", id);
        err = tsm_client_json(c, "PUT", path, body, NULL, &doc, &e);
        json_free(body); /* holds the secret: jansson frees it, the bytes are not reused */
        return ctl_show(err, &doc, &e);
    }
    json_free(body);
    return ctl_help(help, true);
}

/* "cms cards" and the other cms commands: the word after "cms". */
static int ctl_cms(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    static const char *const card_cols[] = {"card_id", "state", "issuer", "msisdn", "cin"};
    static const char *const hist_cols[] = {"id", "event", "state", "cause", "reason", "at"};
    static const char *const act_cols[] = {"id",    "action",  "reason",   "cause",
                                           "state", "mno_job", "attempts", "result"};
    static const char *const alert_cols[] = {"id", "card_id", "kind", "cleared", "message"};
    static const char *const pol_cols[] = {"issuer", "mode", "scope"};
    const char *id = a->npos == 1 ? a->pos[0] : NULL;
    char help[80];
    char path[256];
    char idem[TSM_CLIENT_IDEM_KEY_SIZE];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    size_t max = 0;
    size_t lim;
    ot_err err = OT_OK;
    int rc;

    snprintf(help, sizeof(help), "cms %s", sub);
    if (tsm_client_idem_key(idem) != OT_OK) {
        return ctl_fail(CTL_LOCAL, "no random bytes for an Idempotency-Key");
    }
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    lim = max > 0 ? max : (size_t)100;
    if (strcmp(sub, "cards") == 0 || strcmp(sub, "alerts") == 0 || strcmp(sub, "policies") == 0) {
        const char *state = ctl_get(a, "--state");
        if (a->npos != 0 || (state != NULL && !ctl_cms_id_ok(state))) {
            return ctl_help(help, true);
        }
        if (sub[0] == 'c') {
            snprintf(path, sizeof(path), "/cms/v1/cards?limit=%zu%s%s", lim,
                     state != NULL ? "&state=" : "", state != NULL ? state : "");
            err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
            return ctl_cms_list(err, &doc, &e, card_cols, 5);
        }
        if (sub[0] == 'a') {
            snprintf(path, sizeof(path), "/cms/v1/alerts?limit=%zu", lim);
            err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
            return ctl_cms_list(err, &doc, &e, alert_cols, 5);
        }
        err = tsm_client_json(c, "GET", "/cms/v1/policies", NULL, NULL, &doc, &e);
        return ctl_cms_list(err, &doc, &e, pol_cols, 3);
    }
    if (id == NULL || (strcmp(sub, "import") != 0 && !ctl_cms_id_ok(id))) {
        return ctl_help(help, true);
    }
    if (strcmp(sub, "import") == 0) {
        char *data = NULL;
        size_t len = 0;
        struct json_err jerr;
        rc = ctl_read_file(id, &data, &len);
        if (rc != CTL_OK) {
            return rc;
        }
        memset(&jerr, 0, sizeof(jerr));
        if (json_parse(data, len, len, &body, &jerr) != OT_OK || !json_is_object(body)) {
            free(data);
            json_free(body);
            return ctl_fail(CTL_LOCAL, "%s: the cards must be one JSON object: %s", id,
                            jerr.message[0] ? jerr.message : "it is not an object");
        }
        ot_mem_wipe(data, len); /* it holds the SD keys */
        free(data);
        err = tsm_client_json(c, "POST", "/cms/v1/cards", body, idem, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "card") == 0) {
        snprintf(path, sizeof(path), "/cms/v1/cards/%s", id);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "history") == 0 || strcmp(sub, "actions") == 0) {
        snprintf(path, sizeof(path), "/cms/v1/cards/%s/%s?limit=%zu", id, sub, lim);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return sub[0] == 'h' ? ctl_cms_list(err, &doc, &e, hist_cols, 6)
                             : ctl_cms_list(err, &doc, &e, act_cols, 8);
    }
    if (strcmp(sub, "alert-clear") == 0 || strcmp(sub, "retry") == 0) {
        if (sub[0] == 'a') {
            snprintf(path, sizeof(path), "/cms/v1/alerts/%s/clear", id);
        } else {
            snprintf(path, sizeof(path), "/cms/v1/cards/%s/retry", id);
        }
        body = json_obj_new();
        if (body == NULL) {
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        err = tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    body = json_obj_new();
    if (body == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    if (strcmp(sub, "policy") == 0) {
        if (ctl_get(a, "--mode") == NULL) {
            json_free(body);
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/cms/v1/policies/%s", id);
        err = json_put_str(body, "mode", ctl_get(a, "--mode"));
        if (err == OT_OK && ctl_get(a, "--scope") != NULL) {
            err = json_put_str(body, "scope", ctl_get(a, "--scope"));
        }
        if (err == OT_OK) {
            err = tsm_client_json(c, "PUT", path, body, NULL, &doc, &e);
            json_free(body);
            return ctl_show(err, &doc, &e);
        }
    } else if (strcmp(sub, "destroy") == 0 || strcmp(sub, "lock") == 0
               || strcmp(sub, "unlock") == 0) {
        const char *reason = ctl_get(a, "--reason");
        if (reason == NULL && strcmp(sub, "unlock") == 0) {
            reason = "found";
        }
        if (reason == NULL) {
            json_free(body);
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/cms/v1/cards/%s/%s", id, sub);
        err = json_put_str(body, "reason", reason);
        if (err == OT_OK && ctl_get(a, "--note") != NULL) {
            err = json_put_str(body, "note", ctl_get(a, "--note"));
        }
        if (err == OT_OK) {
            err = tsm_client_json(c, "POST", path, body, idem, &doc, &e);
            json_free(body);
            return ctl_show(err, &doc, &e);
        }
    } else {
        json_free(body);
        return ctl_help(help, true);
    }
    json_free(body);
    return ctl_fail(CTL_LOCAL, "out of memory");
}

/* ---- sp and tsm (the central TSM's provisioning, docs/tsm.md) ----------- */

/* A positive decimal id as the API takes it. */
static bool ctl_id_ok(const char *s)
{
    int64_t v = 0;

    return s != NULL && svc_id_parse(s, &v);
}

/* A JSON array of the positional C-APDUs pos[from..). */
static json_t *ctl_apdu_array(const struct ctl_args *a, size_t from)
{
    json_t *arr = json_arr_new();

    for (size_t i = from; arr != NULL && i < a->npos; i++) {
        if (json_push(arr, json_string(a->pos[i])) != OT_OK) {
            json_free(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* The SP's own SCP03 session through the TSM's relay (seed 002: after the
 * SP rotated its SD's keys): INITIALIZE UPDATE as the first relayed batch,
 * then EXTERNAL AUTHENTICATE and every command wrapped, the answers checked
 * against the card's R-MACs (client/otascp.h, sans-IO core). */
static int ctl_sp_relay(struct tsm_client *c, const struct ctl_args *a)
{
    const char *sd = ctl_get(a, "--sd");
    const char *kvn_s = ctl_get(a, "--kvn");
    const char *keys = ctl_get(a, "--keys");
    const char *cin = ctl_get(a, "--cin"); /* the SD relay (docs/tsm.md §7) */
    size_t first = cin != NULL ? 0 : 1;
    struct otascp_apdu cmds[64];
    uint8_t cbuf[64][GP_MAX_CMD_LEN];
    struct scp03_keyset k;
    struct otascp_cfg cfg;
    struct otascp_state st;
    struct otascp_batch b = {0, NULL};
    struct otascp_result res;
    struct otascp_apdu rap[80];
    uint8_t rbuf[80][GP_MAX_CMD_LEN];
    size_t nr = 0;
    uint8_t aid[16];
    size_t aidn = sizeof(aid);
    size_t kn = sizeof(k.enc);
    size_t n = 0;
    char path[96];
    struct tsm_client_err e;
    int rc = CTL_OK;
    ot_err err = OT_OK;

    memset(&k, 0, sizeof(k));
    memset(&res, 0, sizeof(res));
    if (a->npos < first + 1 || (cin == NULL && !ctl_id_ok(a->pos[0])) || sd == NULL || kvn_s == NULL
        || keys == NULL || a->npos - first > 64
        || (cin != NULL && strspn(cin, "0123456789abcdefABCDEF") != strlen(cin))
        || hex_decode(sd, strlen(sd), aid, &aidn) != OT_OK
        || hex_decode(keys, strlen(keys), k.enc, &kn) != OT_OK
        || (kn != 16 && kn != 24 && kn != 32)) {
        return ctl_help("sp relay", true);
    }
    k.kvn = (uint8_t)strtoul(kvn_s, NULL, 0);
    k.key_len = kn;
    memcpy(k.mac, k.enc, kn);
    memcpy(k.dek, k.enc, kn);
    for (size_t i = first; i < a->npos; i++) {
        size_t l = sizeof(cbuf[0]);
        if (hex_decode(a->pos[i], strlen(a->pos[i]), cbuf[n], &l) != OT_OK) {
            ot_mem_wipe(&k, sizeof(k));
            return ctl_fail(CTL_USAGE, "sp relay: %s is not a hexadecimal C-APDU", a->pos[i]);
        }
        cmds[n].p = cbuf[n];
        cmds[n].n = l;
        n++;
    }
    memset(&cfg, 0, sizeof(cfg));
    cfg.keys = &k;
    cfg.level = 0x33;
    cfg.sd_aid = aid;
    cfg.sd_aid_len = aidn;
    if (cin != NULL) {
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/security-domains/%s/relay", cin,
                 sd);
    } else {
        snprintf(path, sizeof(path), "/tsm/v1/communications/%s/scripts", a->pos[0]);
    }
    for (int batch = 1; batch <= 2 && err == OT_OK; batch++) {
        json_t *arr = NULL;
        json_t *body = NULL;
        json_t *doc = NULL;
        const json_t *ra;
        err = batch == 1 ? otascp_plan(&cfg, cmds, n, &st, &b)
                         : otascp_continue(&k, cmds, n, &st, rap[0].p, rap[0].n, &b);
        if (err == OT_OK) {
            err = otascp_batch_json(&b, &arr);
        }
        otascp_batch_free(&b);
        body = json_obj_new();
        if (err != OT_OK || body == NULL
            || (cin == NULL && json_put_str(body, "purpose", "post_personalization") != OT_OK)
            || (cin == NULL && json_put_bool(body, "relay", true) != OT_OK)
            || (cin != NULL && batch == 1 && json_put_bool(body, "start", true) != OT_OK)
            || json_put(body, "apdus", arr) != OT_OK) {
            json_free(body);
            json_free(arr);
            rc = ctl_fail(CTL_LOCAL, "sp relay: batch %d: %s", batch,
                          ot_strerror(err ? err : OT_E_NOMEM));
            goto out;
        }
        err = tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
        json_free(body);
        if (err != OT_OK) {
            rc = ctl_client_fail("sp relay: ", &e);
            goto out;
        }
        ra = json_object_get(doc, "rapdus");
        for (size_t i = 0; i < json_array_size(ra) && nr < 80; i++) {
            const char *h = json_string_value(json_array_get(ra, i));
            size_t l = sizeof(rbuf[0]);
            if (h == NULL || hex_decode(h, strlen(h), rbuf[nr], &l) != OT_OK) {
                json_free(doc);
                rc = ctl_fail(CTL_API, "sp relay: a malformed R-APDU");
                goto out;
            }
            rap[nr].p = rbuf[nr];
            rap[nr].n = l;
            nr++;
        }
        json_free(doc);
        if (nr == 0) {
            rc = ctl_fail(CTL_API, "sp relay: the card did not answer INITIALIZE UPDATE");
            goto out;
        }
    }
    if (err != OT_OK) {
        rc = ctl_fail(CTL_API, "sp relay: %s", ot_strerror(err));
        goto out;
    }
    if (cin != NULL) { /* the session is over: end the SD relay's job */
        json_t *body = json_obj_new();
        json_t *doc = NULL;
        if (body != NULL && json_put_bool(body, "end", true) == OT_OK) {
            (void)tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
        }
        json_free(body);
        json_free(doc);
    }
    err = otascp_verify(&k, cmds, n, &st, rap, nr, &res);
    if (err != OT_OK) {
        rc = ctl_fail(CTL_API, "sp relay: the answers do not verify: %s", ot_strerror(err));
        goto out;
    }
    for (size_t i = 0; i < res.n; i++) {
        char hex[2 * GP_MAX_CMD_LEN + 1] = "";
        if (!res.resp[i].ran) {
            printf("%zu\tnot run\n", i);
            continue;
        }
        (void)hex_encode(res.resp[i].data, res.resp[i].len, hex, sizeof(hex));
        printf("%zu\t%s%04X\n", i, hex, res.resp[i].sw);
    }
    printf("outcome %s%s\n", otascp_outcome_name(res.outcome),
           res.authenticated ? ", r-mac verified" : "");
    rc = res.outcome == OTASCP_OK ? CTL_OK : CTL_NEGATIVE;
out:
    otascp_result_free(&res);
    ot_mem_wipe(&k, sizeof(k));
    return rc;
}

/* The SP's webhook (docs/tsm.md §6): its settings and its delivery log. */
static int ctl_sp_webhook(struct tsm_client *c, const char *sub, const struct ctl_args *a,
                          size_t max)
{
    static const char *const cols[] = {"id", "event", "state", "attempts", "last_error"};
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    char path[96];
    char help[80];
    ot_err err;

    snprintf(help, sizeof(help), "sp %s", sub);
    if (a->npos != 0) {
        return ctl_help(help, true);
    }
    if (strcmp(sub, "webhook") == 0) {
        err = tsm_client_json(c, "GET", "/tsm/v1/webhook", NULL, NULL, &doc, &e);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "deliveries") == 0) {
        snprintf(path, sizeof(path), "/tsm/v1/webhook/deliveries?limit=%zu",
                 max > 0 ? max : (size_t)100);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        if (g_json) {
            return ctl_show(err, &doc, &e);
        }
        return ctl_cms_list(err, &doc, &e, cols, 5);
    }
    {
        const char *url = ctl_get(a, "--url-of");
        const char *sf = ctl_get(a, "--secret-file");
        int rc;
        if (url == NULL || sf == NULL) {
            return ctl_help(help, true);
        }
        body = json_obj_new();
        if (body == NULL || json_put_str(body, "url", url) != OT_OK) {
            json_free(body);
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        rc = ctl_put_file_secret(body, "secret", sf);
        if (rc != CTL_OK) {
            json_free(body);
            return rc;
        }
        err = tsm_client_json(c, "PUT", "/tsm/v1/webhook", body, NULL, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
}

/* Delegated Management: a token for a plain command, the card's answer
 * back (docs/tsm.md §7). */
static int ctl_sp_dm(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    bool tok = strcmp(sub, "dm-token") == 0;
    char path[160];
    char help[80];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    ot_err err;

    snprintf(help, sizeof(help), "sp %s", sub);
    if (a->npos != (tok ? 3u : 2u) || (!tok && !ctl_id_ok(a->pos[0]))) {
        return ctl_help(help, true);
    }
    for (size_t i = 0; i < a->npos; i++) {
        if (strspn(a->pos[i], "0123456789abcdefABCDEF") != strlen(a->pos[i])) {
            return ctl_help(help, true);
        }
    }
    body = json_obj_new();
    if (body == NULL
        || json_put_str(body, tok ? "command" : "response", a->pos[tok ? 2 : 1]) != OT_OK) {
        json_free(body);
        return ctl_fail(CTL_LOCAL, "%s: out of memory", help);
    }
    if (tok) {
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/security-domains/%s/dm-tokens",
                 a->pos[0], a->pos[1]);
    } else {
        snprintf(path, sizeof(path), "/tsm/v1/dm-tokens/%s/receipt", a->pos[0]);
    }
    err = tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
    json_free(body);
    if (err != OT_OK) {
        return ctl_client_fail(tok ? "sp dm-token: " : "sp dm-receipt: ", &e);
    }
    if (g_json) {
        ctl_print_json(doc);
    } else if (tok) {
        printf("token %lld\t%s\n", (long long)json_integer_value(json_object_get(doc, "id")),
               json_string_value(json_object_get(doc, "command")));
    } else {
        const json_t *card = json_object_get(doc, "card");
        printf("token %lld %s, counter %lld: %s %s%s%s\n",
               (long long)json_integer_value(json_object_get(doc, "id")),
               json_string_value(json_object_get(doc, "state")),
               (long long)json_integer_value(json_object_get(doc, "counter")),
               json_string_value(json_object_get(card, "aid")),
               json_is_true(json_object_get(card, "present")) ? "on the card" : "deleted",
               json_string_value(json_object_get(card, "sd_aid")) != NULL ? ", under " : "",
               json_string_value(json_object_get(card, "sd_aid")) != NULL
                   ? json_string_value(json_object_get(card, "sd_aid"))
                   : "");
    }
    json_free(doc);
    return CTL_OK;
}

static int ctl_sp(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    static const char *const svc_cols[] = {"id",      "service",         "version", "flavor",
                                           "se_type", "application_aid", "sd_aid"};
    static const char *const inst_cols[] = {"id", "cin", "service", "version", "state", "keys"};
    static const char *const comm_cols[] = {"id",      "instance_id", "state",
                                            "scripts", "max_scripts", "status"};
    const char *id = a->npos >= 1 ? a->pos[0] : NULL;
    char help[80];
    char path[128];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    size_t max = 0;
    ot_err err = OT_OK;
    int rc;

    snprintf(help, sizeof(help), "sp %s", sub);
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (strcmp(sub, "services") == 0 || strcmp(sub, "instances") == 0
        || strcmp(sub, "communications") == 0) {
        if (a->npos != 0) {
            return ctl_help(help, true);
        }
        const char *inst = sub[0] == 'c' ? ctl_get(a, "--instance") : NULL;
        if (inst != NULL && !ctl_id_ok(inst)) {
            fprintf(stderr, "tsmctl: --instance: a service instance id (a positive integer)\n");
            return CTL_USAGE;
        }
        snprintf(path, sizeof(path), "/tsm/v1/%s?limit=%zu%s%s",
                 sub[0] == 's'   ? "services"
                 : sub[0] == 'i' ? "service-instances"
                                 : "communications",
                 max > 0 ? max : (size_t)100, inst != NULL ? "&instance=" : "",
                 inst != NULL ? inst : "");
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return sub[0] == 's'   ? ctl_cms_list(err, &doc, &e, svc_cols, 7)
               : sub[0] == 'i' ? ctl_cms_list(err, &doc, &e, inst_cols, 6)
                               : ctl_cms_list(err, &doc, &e, comm_cols, 6);
    }
    if (strcmp(sub, "relay") == 0) {
        return ctl_sp_relay(c, a);
    }
    if (strcmp(sub, "dm-token") == 0 || strcmp(sub, "dm-receipt") == 0) {
        return ctl_sp_dm(c, sub, a);
    }
    if (strcmp(sub, "webhook") == 0 || strcmp(sub, "webhook-put") == 0
        || strcmp(sub, "deliveries") == 0) {
        return ctl_sp_webhook(c, sub, a, max);
    }
    if (!ctl_id_ok(id)) {
        return ctl_help(help, true);
    }
    if (strcmp(sub, "instance") == 0 || strcmp(sub, "op") == 0) {
        if (a->npos != 1) {
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/tsm/v1/%s/%s",
                 sub[0] == 'i' ? "service-instances" : "operations", id);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return ctl_show(err, &doc, &e);
    }
    body = json_obj_new();
    if (body == NULL) {
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    if (strcmp(sub, "deploy") == 0) {
        const char *cin = ctl_get(a, "--cin");
        const char *msisdn = ctl_get(a, "--msisdn");
        const char *q = ctl_get(a, "--qualifier");
        if (a->npos != 1 || (cin == NULL) == (msisdn == NULL)) {
            json_free(body);
            return ctl_help(help, true);
        }
        err = json_put_int(body, "service_id", strtoll(id, NULL, 10));
        if (err == OT_OK) {
            err =
                cin != NULL ? json_put_str(body, "cin", cin) : json_put_str(body, "msisdn", msisdn);
        }
        if (err == OT_OK && q != NULL) {
            err = json_put_str(body, "qualifier", q);
        }
        snprintf(path, sizeof(path), "/tsm/v1/service-instances");
    } else if (strcmp(sub, "activate") == 0 || strcmp(sub, "deactivate") == 0
               || strcmp(sub, "lock") == 0 || strcmp(sub, "unlock") == 0
               || strcmp(sub, "delete") == 0) {
        if (a->npos != 1) {
            json_free(body);
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/tsm/v1/service-instances/%s/%s", id, sub);
    } else if (strcmp(sub, "comm-start") == 0) {
        const char *ms = ctl_get(a, "--max-scripts");
        const char *mb = ctl_get(a, "--max-bytes");
        if (a->npos != 1) {
            json_free(body);
            return ctl_help(help, true);
        }
        err = json_put_int(body, "instance_id", strtoll(id, NULL, 10));
        if (err == OT_OK && ms != NULL) {
            err = json_put_int(body, "max_scripts", strtoll(ms, NULL, 10));
        }
        if (err == OT_OK && mb != NULL) {
            err = json_put_int(body, "max_script_bytes", strtoll(mb, NULL, 10));
        }
        snprintf(path, sizeof(path), "/tsm/v1/communications");
    } else if (strcmp(sub, "comm-end") == 0) {
        const char *s = ctl_get(a, "--status");
        if (a->npos != 1) {
            json_free(body);
            return ctl_help(help, true);
        }
        err = json_put_str(body, "status", s != NULL ? s : "success");
        snprintf(path, sizeof(path), "/tsm/v1/communications/%s/end", id);
    } else if (strcmp(sub, "script") == 0) {
        const char *p = ctl_get(a, "--purpose");
        json_t *arr = NULL;
        if (a->npos < 2) {
            json_free(body);
            return ctl_help(help, true);
        }
        arr = ctl_apdu_array(a, 1);
        err = arr == NULL ? OT_E_NOMEM
                          : json_put_str(body, "purpose", p != NULL ? p : "post_personalization");
        if (err == OT_OK) {
            err = json_put(body, "apdus", arr);
        } else {
            json_free(arr);
        }
        snprintf(path, sizeof(path), "/tsm/v1/communications/%s/scripts", id);
    } else {
        json_free(body);
        return ctl_help(help, true);
    }
    if (err != OT_OK) {
        json_free(body);
        return ctl_fail(CTL_LOCAL, "out of memory");
    }
    err = tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
    json_free(body);
    return ctl_show(err, &doc, &e);
}

static int ctl_tsm(struct tsm_client *c, const char *sub, const struct ctl_args *a)
{
    static const char *const mno_cols[] = {"name", "url", "token_version", "updated_at"};
    static const char *const svc_cols[] = {"id",     "sp_id",   "service",         "version",
                                           "flavor", "se_type", "application_aid", "sd_aid"};
    char help[80];
    char path[128];
    char idem[TSM_CLIENT_IDEM_KEY_SIZE];
    struct tsm_client_err e;
    json_t *body = NULL;
    json_t *doc = NULL;
    size_t max = 0;
    ot_err err = OT_OK;
    int rc;

    snprintf(help, sizeof(help), "tsm %s", sub);
    rc = ctl_limit(a, &max);
    if (rc != CTL_OK) {
        return rc;
    }
    if (tsm_client_idem_key(idem) != OT_OK) {
        return ctl_fail(CTL_LOCAL, "no random bytes for an Idempotency-Key");
    }
    if (strcmp(sub, "mnos") == 0 || strcmp(sub, "services") == 0) {
        if (a->npos != 0) {
            return ctl_help(help, true);
        }
        snprintf(path, sizeof(path), "/tsm/v1/%s?limit=%zu", sub, max > 0 ? max : (size_t)100);
        err = tsm_client_json(c, "GET", path, NULL, NULL, &doc, &e);
        return sub[0] == 'm' ? ctl_cms_list(err, &doc, &e, mno_cols, 4)
                             : ctl_cms_list(err, &doc, &e, svc_cols, 8);
    }
    if (a->npos != 1) {
        return ctl_help(help, true);
    }
    if (strcmp(sub, "audit") == 0) {
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/audit", a->pos[0]);
        body = json_obj_new();
        err = body == NULL ? OT_E_NOMEM : tsm_client_json(c, "POST", path, body, NULL, &doc, &e);
        json_free(body);
        if (err == OT_E_NOMEM && doc == NULL && body == NULL) {
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "dm-keys") == 0) {
        const char *tk = ctl_get(a, "--token-key-file");
        const char *rk = ctl_get(a, "--receipt-key-file");
        if (tk == NULL || rk == NULL
            || strspn(a->pos[0], "0123456789abcdefABCDEF") != strlen(a->pos[0])) {
            return ctl_help(help, true);
        }
        body = json_obj_new();
        if (body == NULL) {
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        rc = ctl_put_file_secret(body, "token_key", tk);
        if (rc == CTL_OK) {
            rc = ctl_put_file_secret(body, "receipt_key", rk);
        }
        if (rc != CTL_OK) {
            json_free(body);
            return rc;
        }
        snprintf(path, sizeof(path), "/tsm/v1/secure-elements/%s/dm-keys", a->pos[0]);
        err = tsm_client_json(c, "PUT", path, body, NULL, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "mno-put") == 0) {
        const char *url = ctl_get(a, "--url-of");
        const char *tf = ctl_get(a, "--token-file");
        const char *ca = ctl_get(a, "--ca-file");
        if (url == NULL || tf == NULL || !ctl_cms_id_ok(a->pos[0])) {
            return ctl_help(help, true);
        }
        body = json_obj_new();
        if (body == NULL || json_put_str(body, "url", url) != OT_OK
            || (ca != NULL && json_put_str(body, "ca", ca) != OT_OK)) {
            json_free(body);
            return ctl_fail(CTL_LOCAL, "out of memory");
        }
        rc = ctl_put_file_secret(body, "token", tf);
        if (rc != CTL_OK) {
            json_free(body);
            return rc;
        }
        snprintf(path, sizeof(path), "/tsm/v1/mnos/%s", a->pos[0]);
        err = tsm_client_json(c, "PUT", path, body, NULL, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    if (strcmp(sub, "service-add") == 0) {
        char *data = NULL;
        size_t len = 0;
        struct json_err jerr;
        rc = ctl_read_file(a->pos[0], &data, &len);
        if (rc != CTL_OK) {
            return rc;
        }
        memset(&jerr, 0, sizeof(jerr));
        if (json_parse(data, len, len, &body, &jerr) != OT_OK || !json_is_object(body)) {
            free(data);
            json_free(body);
            return ctl_fail(CTL_LOCAL, "%s: the service must be one JSON object: %s", a->pos[0],
                            jerr.message[0] ? jerr.message : "it is not an object");
        }
        free(data);
        err = tsm_client_json(c, "POST", "/tsm/v1/services", body, idem, &doc, &e);
        json_free(body);
        return ctl_show(err, &doc, &e);
    }
    return ctl_help(help, true);
}

/* ---- main --------------------------------------------------------------- */

static const struct ctl_opt ctl_global_opts[] = {{"--profile", true, false}, {"--url", true, false},
                                                 {"--token", true, false},   {"--ca", true, false},
                                                 {"--cert", true, false},    {"--key", true, false},
                                                 {"--json", false, false},   {NULL, false, false}};

static const struct ctl_opt ctl_cmd_opts[] = {{"--format", true, false},
                                              {"--chunk", true, false},
                                              {"--msisdn", true, true},
                                              {"--imsi", true, false},
                                              {"--id-only", false, false},
                                              {"--mno", true, false},
                                              {"--type", true, false},
                                              {"--limit", true, false},
                                              {"--aid", true, false},
                                              {"--sp", true, false},
                                              {"--privileges", true, false},
                                              {"--lcs", true, false},
                                              {"--principal-id", true, false},
                                              {"--kind", true, false},
                                              {"--name", true, false},
                                              {"--ttl-days", true, false},
                                              {"--label", true, false},
                                              {"--token-only", false, false},
                                              {"--db", true, false},
                                              {"--action", true, false},
                                              {"--request-id", true, false},
                                              {"--display-name", true, false},
                                              {"--imei", true, false},
                                              {"--json", false, false},
                                              {"--instance", true, false},
                                              {"--cin", true, true},
                                              {"--from", true, false},
                                              {"--endpoint", true, false},
                                              {"--pub", true, false},
                                              {"--key-type", true, false},
                                              {"--key-file", true, false},
                                              {"--dongle-pub", true, false},
                                              {"--state", true, false},
                                              {"--reason", true, false},
                                              {"--note", true, false},
                                              {"--mode", true, false},
                                              {"--scope", true, false},
                                              {"--qualifier", true, false},
                                              {"--max-scripts", true, false},
                                              {"--max-bytes", true, false},
                                              {"--status", true, false},
                                              {"--purpose", true, false},
                                              {"--sd", true, false},
                                              {"--kvn", true, false},
                                              {"--keys", true, false},
                                              {"--url-of", true, false},
                                              {"--token-file", true, false},
                                              {"--ca-file", true, false},
                                              {"--max", true, false},
                                              {"--window-s", true, false},
                                              {"--min-s", true, false},
                                              {"--merchants", true, false},
                                              {"--disabled", false, false},
                                              {"--email", true, false},
                                              {"--webhook", true, false},
                                              {"--secret-file", true, false},
                                              {"--token-key-file", true, false},
                                              {"--receipt-key-file", true, false},
                                              {"--events", true, false},
                                              {NULL, false, false}};

/* The commands and the options each accepts (beyond the global ones). */
static const struct {
    const char *cmd;
    const char *opts;
} ctl_cmds[] = {
    {"se import", " --format --chunk --json "},
    {"se get", " --msisdn --imsi --id-only --json "},
    {"se list", " --mno --type --limit --json "},
    {"se sd list", " --limit --json "},
    {"se sd assign", " --aid --sp --privileges --lcs --json "},
    {"principal create", " --display-name --msisdn --imei --imsi --mno --json "},
    {"principal list", " --limit --json "},
    {"principal get", " --json "},
    {"principal bind-cert", " --json "},
    {"principal unbind-cert", " --json "},
    {"token issue", " --principal-id --kind --name --ttl-days --label --token-only --json "},
    {"token revoke", " --json "},
    {"token list", " --principal-id --limit --json "},
    {"audit verify", " --db --json "},
    {"audit list", " --limit --action --principal-id --request-id --json "},
    {"mno devices", " --instance --limit --json "},
    {"mno device", " --instance --json "},
    {"mno enrol", " --instance --msisdn --cin --json "},
    {"mno status", " --instance --msisdn --imsi --imei --json "},
    {"mno submit", " --instance --json "},
    {"mno jobs", " --instance --limit --json "},
    {"mno job", " --instance --json "},
    {"mno cancel", " --instance --json "},
    {"mno resolve", " --instance --json "},
    {"mno alerts", " --instance --limit --json "},
    {"mno alert-clear", " --instance --json "},
    {"audit follow", " --from --limit --json "},
    {"pay sp-register", " --kind --display-name --endpoint --pub --principal-id --json "},
    {"pay sps", " --limit --json "},
    {"pay sp", " --json "},
    {"pay sp-revoke", " --json "},
    {"pay key-deposit", " --key-type --key-file --json "},
    {"pay keys", " --limit --json "},
    {"pay client-enrol", " --principal-id --dongle-pub --json "},
    {"pay clients", " --limit --json "},
    {"pay client", " --json "},
    {"pay client-revoke", " --json "},
    {"cms import", " --json "},
    {"cms cards", " --state --limit --json "},
    {"cms card", " --json "},
    {"cms history", " --limit --json "},
    {"cms actions", " --limit --json "},
    {"cms destroy", " --reason --note --json "},
    {"cms lock", " --reason --note --json "},
    {"cms unlock", " --reason --note --json "},
    {"cms retry", " --json "},
    {"cms alerts", " --limit --json "},
    {"cms alert-clear", " --json "},
    {"cms policy", " --mode --scope --json "},
    {"cms policies", " --json "},
    {"cms rules", " --json "},
    {"cms rule", " --kind --action --max --window-s --min-s --merchants --disabled --json "},
    {"cms rule-delete", " --json "},
    {"cms decisions", " --limit --json "},
    {"cms notify", " --email --webhook --secret-file --events --json "},
    {"cms notify-show", " --json "},
    {"sp services", " --limit --json "},
    {"sp deploy", " --cin --msisdn --qualifier --json "},
    {"sp instances", " --limit --json "},
    {"sp instance", " --json "},
    {"sp activate", " --json "},
    {"sp deactivate", " --json "},
    {"sp lock", " --json "},
    {"sp unlock", " --json "},
    {"sp delete", " --json "},
    {"sp communications", " --instance --limit --json "},
    {"sp comm-start", " --max-scripts --max-bytes --json "},
    {"sp comm-end", " --status --json "},
    {"sp script", " --purpose --json "},
    {"sp relay", " --sd --kvn --keys --cin --json "},
    {"sp dm-token", " --json "},
    {"sp webhook", " --json "},
    {"sp webhook-put", " --url-of --secret-file --json "},
    {"sp deliveries", " --limit --json "},
    {"sp dm-receipt", " --json "},
    {"sp op", " --json "},
    {"tsm mno-put", " --url-of --token-file --ca-file --json "},
    {"tsm mnos", " --limit --json "},
    {"tsm service-add", " --json "},
    {"tsm services", " --limit --json "},
    {"tsm audit", " --json "},
    {"tsm dm-keys", " --token-key-file --receipt-key-file --json "},
};

/* -1: unknown command; 0: an option that does not apply; 1: fine. */
static int ctl_allowed(const char *cmd, const struct ctl_args *a)
{
    size_t i;
    size_t k;
    char needle[64];

    for (i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
        if (strcmp(ctl_cmds[i].cmd, cmd) != 0) {
            continue;
        }
        for (k = 0; k < a->nopt; k++) {
            snprintf(needle, sizeof(needle), " %s ", a->opt[k]);
            if (strstr(ctl_cmds[i].opts, needle) == NULL) {
                fprintf(stderr, "tsmctl %s: option %s does not apply here\n", cmd, a->opt[k]);
                return 0;
            }
        }
        return 1;
    }
    return -1;
}

static int ctl_run(struct tsm_client *c, const char *cmd, const struct ctl_args *a)
{
    if (strcmp(cmd, "se import") == 0) {
        return a->npos == 1 ? ctl_se_import(c, a) : ctl_help(cmd, true);
    }
    if (strcmp(cmd, "se get") == 0) {
        return ctl_se_get(c, a);
    }
    if (strcmp(cmd, "se list") == 0) {
        return ctl_se_list(c, a);
    }
    if (strcmp(cmd, "se sd list") == 0) {
        return ctl_sd_list(c, a);
    }
    if (strcmp(cmd, "se sd assign") == 0) {
        return ctl_sd_assign(c, a);
    }
    if (strcmp(cmd, "principal create") == 0) {
        return ctl_principal_create(c, a);
    }
    if (strcmp(cmd, "principal list") == 0) {
        return ctl_principal_list(c, a);
    }
    if (strcmp(cmd, "principal get") == 0) {
        return ctl_principal_get(c, a);
    }
    if (strcmp(cmd, "principal bind-cert") == 0) {
        return ctl_cert_bind(c, a);
    }
    if (strcmp(cmd, "principal unbind-cert") == 0) {
        return ctl_cert_unbind(c, a);
    }
    if (strcmp(cmd, "token issue") == 0) {
        return ctl_token_issue(c, a);
    }
    if (strcmp(cmd, "token revoke") == 0) {
        return ctl_token_revoke(c, a);
    }
    if (strcmp(cmd, "token list") == 0) {
        return ctl_token_list(c, a);
    }
    if (strcmp(cmd, "audit verify") == 0) {
        return ctl_audit_verify(c);
    }
    if (strncmp(cmd, "mno ", 4) == 0) {
        return ctl_mno(c, cmd + 4, a);
    }
    if (strcmp(cmd, "audit follow") == 0) {
        return ctl_audit_follow(c, a);
    }
    if (strncmp(cmd, "pay ", 4) == 0) {
        return ctl_pay(c, cmd + 4, a);
    }
    if (strcmp(cmd, "cms rules") == 0 || strcmp(cmd, "cms rule") == 0
        || strcmp(cmd, "cms rule-delete") == 0 || strcmp(cmd, "cms decisions") == 0
        || strcmp(cmd, "cms notify") == 0 || strcmp(cmd, "cms notify-show") == 0) {
        return ctl_cms_superv(c, cmd + 4, a);
    }
    if (strncmp(cmd, "cms ", 4) == 0) {
        return ctl_cms(c, cmd + 4, a);
    }
    if (strncmp(cmd, "sp ", 3) == 0) {
        return ctl_sp(c, cmd + 3, a);
    }
    if (strncmp(cmd, "tsm ", 4) == 0) {
        return ctl_tsm(c, cmd + 4, a);
    }
    return ctl_audit_list(c, a);
}

int main(int argc, char **argv)
{
    struct ctl_args g;
    struct ctl_args a;
    struct ctl_profile prof;
    struct tsm_client *c = NULL;
    char cmd[64];
    int first = 1;
    int i;
    int words = 0;
    int rc;

    /* Global options come before the command words. */
    memset(&g, 0, sizeof(g));
    for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        size_t k;
        if (strcmp(argv[i], "--help") == 0) {
            fputs(ctl_usage, stdout);
            return CTL_OK;
        }
        if (strcmp(argv[i], "--version") == 0) {
            printf("tsmctl %s (OpenTSM)\n", OT_VERSION);
            return CTL_OK;
        }
        for (k = 0; ctl_global_opts[k].name != NULL; k++) {
            if (strcmp(ctl_global_opts[k].name, argv[i]) == 0) {
                break;
            }
        }
        if (ctl_global_opts[k].name == NULL) {
            fprintf(stderr, "tsmctl: unknown option '%s'\n\n%s", argv[i], ctl_usage);
            return CTL_USAGE;
        }
        if (ctl_get(&g, argv[i]) != NULL) {
            fprintf(stderr, "tsmctl: option %s given twice\n", argv[i]);
            return CTL_USAGE;
        }
        g.opt[g.nopt] = argv[i];
        if (ctl_global_opts[k].has_arg) {
            if (i + 1 >= argc) {
                fprintf(stderr, "tsmctl: %s needs a value\n", argv[i]);
                return CTL_USAGE;
            }
            g.val[g.nopt] = argv[++i];
        }
        if (++g.nopt == CTL_MAX_ARGS) {
            return CTL_USAGE;
        }
    }
    first = i;
    if (first >= argc) {
        fputs(ctl_usage, stderr);
        return CTL_USAGE;
    }
    /* Command: "se sd list" has three words, the others two. */
    cmd[0] = '\0';
    words = strcmp(argv[first], "se") == 0 && first + 1 < argc && strcmp(argv[first + 1], "sd") == 0
                ? 3
                : 2;
    if (first + words > argc) {
        fputs(ctl_usage, stderr);
        return CTL_USAGE;
    }
    for (i = 0; i < words; i++) {
        size_t len = strlen(cmd);
        snprintf(cmd + len, sizeof(cmd) - len, "%s%s", i ? " " : "", argv[first + i]);
    }
    if (!ctl_parse(cmd, argc, argv, first + words, ctl_cmd_opts, &a)) {
        return ctl_help(cmd, true);
    }
    if (a.help) {
        return ctl_help(cmd, false);
    }
    rc = ctl_allowed(cmd, &a);
    if (rc < 0) {
        fprintf(stderr, "tsmctl: unknown command '%s'\n\n%s", cmd, ctl_usage);
        return CTL_USAGE;
    }
    if (rc == 0) {
        return ctl_help(cmd, true);
    }
    g_json = ctl_get(&g, "--json") != NULL || ctl_get(&a, "--json") != NULL;
    if (strcmp(cmd, "audit verify") == 0 && ctl_get(&a, "--db") != NULL) {
        return a.npos == 0 ? ctl_audit_verify_db(ctl_get(&a, "--db")) : ctl_help(cmd, true);
    }
    rc = ctl_profile_load(&g, &prof);
    if (rc == CTL_OK) {
        rc = ctl_client(&prof, &c);
    }
    ot_mem_wipe(prof.f.token, sizeof(prof.f.token));
    if (rc != CTL_OK) {
        return rc;
    }
    rc = ctl_run(c, cmd, &a);
    tsm_client_free(c);
    return rc;
}
