# The library's dependencies, found the same way by this project's build and by
# a consumer's find_package(simnpo). SIMNPO_USE_DNNL must be set before.
include(CMakeFindDependencyMacro)

macro(simnpo_find_dependency)
    if(CMAKE_FIND_PACKAGE_NAME)  # inside find_package(simnpo): forward its QUIET/REQUIRED
        find_dependency(${ARGN})
    else()
        find_package(${ARGN} REQUIRED)
    endif()
endmacro()

simnpo_find_dependency(Eigen3 3.4 NO_MODULE)
simnpo_find_dependency(xtl)
simnpo_find_dependency(xtensor)
simnpo_find_dependency(nlohmann_json 3)
simnpo_find_dependency(OpenMP COMPONENTS CXX)
simnpo_find_dependency(ZLIB)  # the zlib membership-inference score
# The tokenizers: PCRE2 for tokenizer.json's regular expressions, utf8proc for
# Unicode normalization and categories. Debian ships pkg-config files for them.
simnpo_find_dependency(PkgConfig)
if(NOT TARGET PkgConfig::SIMNPO_PCRE2)
    pkg_check_modules(SIMNPO_PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8)
endif()
if(NOT TARGET PkgConfig::SIMNPO_UTF8PROC)
    pkg_check_modules(SIMNPO_UTF8PROC REQUIRED IMPORTED_TARGET libutf8proc)
endif()
# oneDNN (Debian's libdnnl-dev, built on OpenMP like the rest): the CPU's
# matrix products, fp32 and BF16. Its package config also finds OpenCL.
if(SIMNPO_USE_DNNL)
    simnpo_find_dependency(dnnl CONFIG)
endif()
