# Every TEST_CASE must be a ctest test of its own: doctest_discover_tests cuts a name at ';' (a CMake list
# separator), and the pieces match no test case, so such a test would pass under ctest without running.
# Run as: cmake -DTESTS=<tqb_tests> -P test_names.cmake
execute_process(COMMAND ${TESTS} --list-test-cases --no-version OUTPUT_VARIABLE listing RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "FAILED: ${TESTS} --list-test-cases exited with ${rc}")
endif()
string(REPLACE ";" "<semicolon>" listing "${listing}")
string(REPLACE "\n" ";" lines "${listing}")
set(bad "")
foreach(line IN LISTS lines)
  if(line MATCHES "<semicolon>")
    string(APPEND bad "\n  ${line}")
  endif()
endforeach()
if(bad)
  message(FATAL_ERROR "FAILED: test case names with ';' would not run under ctest (use ',' or ':'):${bad}")
endif()
message(STATUS "every test case name registers whole")
