# Shared build helpers: warnings, sanitizers, one static library per module,
# unit tests next to their module (STYLE.md sections 11-13).

add_compile_definitions(_POSIX_C_SOURCE=200809L)

set(OT_WARNINGS -Wall -Wextra -Wpedantic -Wshadow -Wvla -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2)
if(OT_WERROR)
  list(APPEND OT_WARNINGS -Werror)
endif()

if(OT_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=all
                      -fno-omit-frame-pointer -O1 -g)
  add_link_options(-fsanitize=address,undefined -fno-sanitize-recover=all)
endif()
if(OT_FUZZ)
  # Instrument every library for coverage; the targets link the fuzzer main.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -g)
  add_link_options(-fsanitize=address,undefined)
endif()

# ot_module(NAME DEPS ...): static library ot_NAME from every .c in the current
# directory except *_test.c, plus a cmocka test per *_test.c (ctest "NAME.x").
function(ot_module name)
  cmake_parse_arguments(M "" "" "DEPS;TEST_DEPS;SUBDIRS" ${ARGN})
  set(globs ${CMAKE_CURRENT_SOURCE_DIR}/*.c)
  set(tglobs ${CMAKE_CURRENT_SOURCE_DIR}/*_test.c)
  foreach(d ${M_SUBDIRS})
    list(APPEND globs ${CMAKE_CURRENT_SOURCE_DIR}/${d}/*.c)
    list(APPEND tglobs ${CMAKE_CURRENT_SOURCE_DIR}/${d}/*_test.c)
  endforeach()
  file(GLOB srcs CONFIGURE_DEPENDS ${globs})
  file(GLOB tests CONFIGURE_DEPENDS ${tglobs})
  if(tests)
    list(REMOVE_ITEM srcs ${tests})
  endif()
  if(srcs)
    add_library(ot_${name} STATIC ${srcs})
    target_include_directories(ot_${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
    target_compile_options(ot_${name} PRIVATE ${OT_WARNINGS})
    target_link_libraries(ot_${name} PUBLIC ${M_DEPS})
  else()
    # A module whose sources are not written yet: headers only.
    add_library(ot_${name} INTERFACE)
    target_include_directories(ot_${name} INTERFACE ${PROJECT_SOURCE_DIR}/src)
    target_link_libraries(ot_${name} INTERFACE ${M_DEPS})
  endif()
  if(OT_TESTS)
    foreach(t ${tests})
      get_filename_component(base ${t} NAME_WE)
      string(REGEX REPLACE "_test$" "" tname ${base})
      add_executable(t_${name}_${tname} ${t})
      target_compile_options(t_${name}_${tname} PRIVATE ${OT_WARNINGS})
      target_compile_definitions(t_${name}_${tname} PRIVATE OT_UNIT_TEST
        OT_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
      target_link_libraries(t_${name}_${tname} PRIVATE ot_${name} ${M_TEST_DEPS}
        PkgConfig::CMOCKA)
      add_test(NAME ${name}.${tname} COMMAND t_${name}_${tname})
      set_tests_properties(${name}.${tname} PROPERTIES LABELS unit TIMEOUT 300)
    endforeach()
  endif()
endfunction()

# ot_program(NAME SOURCES ... DEPS ...): a thin main in src/bin.
function(ot_program name)
  cmake_parse_arguments(P "" "" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${P_SOURCES})
  target_compile_options(${name} PRIVATE ${OT_WARNINGS})
  target_link_libraries(${name} PRIVATE ${P_DEPS})
endfunction()
