# ctest install_without_optional_parts (tests/CMakeLists.txt), run with cmake -P:
#   -DSOURCE_DIR= -DWORK_DIR= -DGENERATOR= -DCXX= -DPKG_CONFIG= -DDATADIR=
# Configures tilekit where the optional parts' libraries cannot be found (pkg-config sees only
# stb.pc; find_package(SQLite3), find_package(PostgreSQL) and find_package(CURL) are disabled), installs it, and checks
# that the core and jobs are installed and fast_codecs, s3, sqlite and postgresql left no target,
# export file or .pc file behind; then that find_package(tilekit) finds jobs and reports sqlite
# and postgresql as not installed.
cmake_minimum_required(VERSION 3.21)

function(run)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT status EQUAL 0)
        string(JOIN " " command ${ARGN})
        message(FATAL_ERROR "failed (${status}): ${command}\n${out}\n${err}")
    endif()
    set(run_output "${out}${err}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE "${WORK_DIR}")
set(pc_only_stb "${WORK_DIR}/pkgconfig")
file(MAKE_DIRECTORY "${pc_only_stb}")
run("${PKG_CONFIG}" --variable=pcfiledir stb)
string(STRIP "${run_output}" stb_pc_dir)
file(COPY "${stb_pc_dir}/stb.pc" DESTINATION "${pc_only_stb}")

set(build "${WORK_DIR}/build")
set(prefix "${WORK_DIR}/prefix")
run("${CMAKE_COMMAND}" -E env --unset=PKG_CONFIG_PATH "PKG_CONFIG_LIBDIR=${pc_only_stb}"
    "${CMAKE_COMMAND}" -S "${SOURCE_DIR}" -B "${build}" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}"
    -DTILEKIT_BUILD_TESTS=OFF -DTILEKIT_BUILD_EXAMPLES=OFF -DTILEKIT_BUILD_BENCH=OFF -DTILEKIT_INSTALL=ON
    -DCMAKE_DISABLE_FIND_PACKAGE_SQLite3=ON -DCMAKE_DISABLE_FIND_PACKAGE_PostgreSQL=ON
    -DCMAKE_DISABLE_FIND_PACKAGE_CURL=ON)
set(configure_output "${run_output}")
foreach(expected "no tilekit::fast_codecs" "no tilekit::s3" "no tilekit::sqlite" "no tilekit::postgresql" "no tilekit::webp"
        "no tilekit::tiff")
    string(FIND "${configure_output}" "${expected}" at)
    if(at EQUAL -1)
        message(FATAL_ERROR "configure did not say '${expected}':\n${configure_output}")
    endif()
endforeach()
run("${CMAKE_COMMAND}" --install "${build}" --prefix "${prefix}")

set(failures "")
foreach(file tilekit.pc tilekit-jobs.pc)
    if(NOT EXISTS "${prefix}/${DATADIR}/pkgconfig/${file}")
        list(APPEND failures "missing ${DATADIR}/pkgconfig/${file}")
    endif()
endforeach()
foreach(file tilekitTargets.cmake tilekitJobsTargets.cmake tilekitConfig.cmake)
    if(NOT EXISTS "${prefix}/${DATADIR}/cmake/tilekit/${file}")
        list(APPEND failures "missing ${DATADIR}/cmake/tilekit/${file}")
    endif()
endforeach()
foreach(file tilekit-fast-codecs.pc tilekit-s3.pc tilekit-sqlite.pc tilekit-postgresql.pc tilekit-webp.pc tilekit-tiff.pc)
    if(EXISTS "${prefix}/${DATADIR}/pkgconfig/${file}")
        list(APPEND failures "installed ${DATADIR}/pkgconfig/${file} although its part was not built")
    endif()
endforeach()
foreach(file tilekitFastCodecsTargets.cmake tilekitS3Targets.cmake tilekitSqliteTargets.cmake
             tilekitPostgresqlTargets.cmake tilekitWebpTargets.cmake tilekitTiffTargets.cmake)
    if(EXISTS "${prefix}/${DATADIR}/cmake/tilekit/${file}")
        list(APPEND failures "installed ${DATADIR}/cmake/tilekit/${file} although its part was not built")
    endif()
endforeach()

# A consumer: jobs is there, sqlite is reported as not installed (not as a missing library).
set(consumer "${WORK_DIR}/consumer")
file(WRITE "${consumer}/CMakeLists.txt" [=[
cmake_minimum_required(VERSION 3.21)
project(partial LANGUAGES CXX)
find_package(tilekit REQUIRED COMPONENTS jobs)
if(NOT TARGET tilekit::jobs OR TARGET tilekit::sqlite OR TARGET tilekit::postgresql OR TARGET tilekit::fast_codecs
   OR TARGET tilekit::s3)
    message(FATAL_ERROR "wrong targets after find_package(tilekit COMPONENTS jobs)")
endif()
find_package(tilekit COMPONENTS sqlite)
if(tilekit_FOUND OR tilekit_sqlite_FOUND)
    message(FATAL_ERROR "find_package(tilekit COMPONENTS sqlite) found an sqlite part that was not installed")
endif()
find_package(tilekit COMPONENTS postgresql)
if(tilekit_FOUND OR tilekit_postgresql_FOUND)
    message(FATAL_ERROR "find_package(tilekit COMPONENTS postgresql) found a postgresql part that was not installed")
endif()
message(STATUS "partial-consumer: ok")
]=])
run("${CMAKE_COMMAND}" -E env --unset=PKG_CONFIG_PATH "PKG_CONFIG_LIBDIR=${pc_only_stb}"
    "${CMAKE_COMMAND}" -S "${consumer}" -B "${consumer}/build" -G "${GENERATOR}" "-DCMAKE_CXX_COMPILER=${CXX}"
    "-DCMAKE_PREFIX_PATH=${prefix}")
string(FIND "${run_output}" "partial-consumer: ok" at)
if(at EQUAL -1)
    list(APPEND failures "the consumer configure did not report ok:\n${run_output}")
endif()
string(FIND "${run_output}" "installed without the sqlite component" at)
if(at EQUAL -1)
    list(APPEND failures "find_package(tilekit COMPONENTS sqlite) did not say 'installed without the sqlite component':\n${run_output}")
endif()
string(FIND "${run_output}" "installed without the postgresql component" at)
if(at EQUAL -1)
    list(APPEND failures "find_package(tilekit COMPONENTS postgresql) did not say 'installed without the postgresql component':\n${run_output}")
endif()

if(failures)
    string(JOIN "\n  " failures ${failures})
    message(FATAL_ERROR "install without the optional parts:\n  ${failures}")
endif()
message(STATUS "install without the optional parts: core and jobs installed; no fast_codecs, s3, sqlite or postgresql files")
