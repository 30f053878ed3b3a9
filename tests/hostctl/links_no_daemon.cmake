# Fails when the hostctl binary's link line includes libhostd_manager or
# libhostd_daemon: hostctl reaches hostd only through gRPC (hostd::proto), and
# what it shares with hostd lives below manager/ (base/, channel/).
#
#   cmake -DBUILD_DIR=<build dir> "-DGENERATOR=<CMAKE_GENERATOR>" -P links_no_daemon.cmake
#
# It reads the link line from the generated build files (build.ninja, or link.txt
# for Makefiles) rather than get_target_property(hostctl LINK_LIBRARIES) at
# configure time: that property lists only hostctl's direct dependencies, as
# written (aliases, generator expressions), so hostd::daemon reached through
# hostctl_client or any library below it would go unseen unless this script
# re-did CMake's transitive resolution. The build files hold the line CMake
# computed and the linker runs, every transitive library included.

if(GENERATOR STREQUAL "Ninja")
  file(READ "${BUILD_DIR}/build.ninja" build_file)
  # The link edge "build hostctl/hostctl: CXX_EXECUTABLE_LINKER__hostctl_<config> ..."
  # and its indented variables, up to the blank line that ends it.
  string(FIND "${build_file}" "CXX_EXECUTABLE_LINKER__hostctl_" start)
  if(start EQUAL -1)
    set(link "")
  else()
    string(SUBSTRING "${build_file}" ${start} -1 link)
    string(FIND "${link}" "\n\n" end)
    string(SUBSTRING "${link}" 0 ${end} link)
  endif()
elseif(GENERATOR MATCHES "Makefiles")
  file(READ "${BUILD_DIR}/hostctl/CMakeFiles/hostctl.dir/link.txt" link)
else()
  message(FATAL_ERROR "hostctl link check: generator \"${GENERATOR}\" is not supported (Ninja or Makefiles)")
endif()

# A line that does not name hostctl's own library is not hostctl's link line.
if(NOT link MATCHES "libhostctl_client")
  message(FATAL_ERROR "hostctl link check: no link line for hostctl in ${BUILD_DIR}")
endif()
foreach(lib libhostd_manager libhostd_daemon)
  if(link MATCHES "${lib}\\.")
    message(FATAL_ERROR "hostctl links ${lib}: it must reach hostd only through gRPC; "
                        "move what it shares with hostd below manager/ (base/ or channel/)")
  endif()
endforeach()
message(STATUS "hostctl links neither libhostd_manager nor libhostd_daemon")
