# Installs simnpo into a fresh prefix, then configures, builds and runs a tiny
# consumer project that finds it with find_package(simnpo CONFIG).
# Inputs: SOURCE_DIR, WORK_DIR, GENERATOR, CXX_COMPILER, and CUDA_COMPILER (nvcc, or
# empty): with it the installed package has simnpo::cuda and the consumer builds a
# CUDA program against it too.
file(REMOVE_RECURSE ${WORK_DIR})
if(CUDA_COMPILER)
    set(cuda_options -DSIMNPO_WITH_CUDA=ON -DCMAKE_CUDA_COMPILER=${CUDA_COMPILER})
else()
    set(cuda_options -DSIMNPO_WITH_CUDA=OFF)
endif()

function(step)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "failed: ${ARGN}\n${output}")
    endif()
endfunction()

step(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/build -G ${GENERATOR}
     -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_INSTALL_PREFIX=${WORK_DIR}/prefix
     -DSIMNPO_BUILD_TESTS=OFF -DSIMNPO_BUILD_EXAMPLES=OFF -DSIMNPO_BUILD_BENCHMARKS=OFF ${cuda_options})
step(${CMAKE_COMMAND} --install ${WORK_DIR}/build)
step(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/install/consumer -B ${WORK_DIR}/consumer -G ${GENERATOR}
     -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix -DCMAKE_BUILD_TYPE=Release
     ${cuda_options})
step(${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
step(${WORK_DIR}/consumer/consumer)
if(CUDA_COMPILER)
    step(${WORK_DIR}/consumer/consumer_cuda)
endif()
