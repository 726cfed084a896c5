// Internal headers are only reachable through <simnpo.hpp>, so that the
// include order (and every configuration macro) is decided in one place.
#ifndef SIMNPO_UMBRELLA_INCLUDE
#error "simnpo: include <simnpo.hpp> instead of an internal header"
#endif
