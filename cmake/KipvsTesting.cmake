find_package(Catch2 REQUIRED)
include(Catch)

# kipvs_unit_test(<name> SOURCES ... LIBRARIES ...): a Catch2 binary whose
# cases ctest lists one by one, labelled "unit" (host, no privileges).
function(kipvs_unit_test name)
  cmake_parse_arguments(ARG "" "" "SOURCES;LIBRARIES" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE kipvs_catch_main kipvs_test_support kipvs_ipvs_fakes kipvs_nftables_fakes
    kipvs_address_fakes kipvs_conntrack_fakes ${ARG_LIBRARIES})
  # --warn NoTests: a case whose name ctest cannot pass through (a ";" in it)
  # would otherwise match nothing and "pass".
  catch_discover_tests(${name} TEST_PREFIX "${name}:" EXTRA_ARGS --warn NoTests PROPERTIES LABELS unit)
endfunction()
