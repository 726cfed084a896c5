// The test program's main. Every tests/test_<name>.cpp is one suite of it, test_<name>,
// and one ctest of the same name that runs that suite alone (tests/CMakeLists.txt).
#define BOOST_TEST_MODULE simnpo
#include <boost/test/unit_test.hpp>
