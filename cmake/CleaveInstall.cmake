# `cmake --install` exports cleave::device (with cleave::common and cleave::proto, which it
# needs) so a robotics project can find_package(cleave) and link it.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS cleave_proto cleave_units cleave_files cleave_common cleave_device
        EXPORT cleaveTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS cleave cleave-edge cleave-device RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY common/include/ device/include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY ${CLEAVE_PROTO_INCLUDE_DIR}/cleave DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        FILES_MATCHING PATTERN "*.h")
install(EXPORT cleaveTargets NAMESPACE cleave:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cleave)

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/cleaveConfig.cmake.in
                              ${CMAKE_CURRENT_BINARY_DIR}/cleaveConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cleave)
write_basic_package_version_file(${CMAKE_CURRENT_BINARY_DIR}/cleaveConfigVersion.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_CURRENT_BINARY_DIR}/cleaveConfig.cmake
              ${CMAKE_CURRENT_BINARY_DIR}/cleaveConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/cleave)
