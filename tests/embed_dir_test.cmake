# ctest embed_dir: cmake/embed_dir.cmake embeds plain names only (what it
# embeds is served without a token). Usage: cmake -DSRC=<source dir> -DTMP=<dir> -P embed_dir_test.cmake
set(d "${TMP}/embed_dir_test")
file(REMOVE_RECURSE "${d}")
file(WRITE "${d}/in/app.js" "x")
file(WRITE "${d}/in/.env" "SECRET")
file(WRITE "${d}/in/.app.js.swp" "swap")
execute_process(COMMAND ${CMAKE_COMMAND} -DDIR=${d}/in -DOUT=${d}/out.c -P ${SRC}/cmake/embed_dir.cmake
                RESULT_VARIABLE rc)
file(READ "${d}/out.c" out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "\"app.js\"" OR out MATCHES "env" OR out MATCHES "swp"
   OR NOT out MATCHES "sp_console_nfiles = 1;")
  message(FATAL_ERROR "embed_dir: want app.js alone, dot files left out (rc ${rc}):\n${out}")
endif()
file(WRITE "${d}/in/bad\"name.js" "x")
execute_process(COMMAND ${CMAKE_COMMAND} -DDIR=${d}/in -DOUT=${d}/out.c -P ${SRC}/cmake/embed_dir.cmake
                RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "embed_dir: a name with a quote must stop the build")
endif()
message(STATUS "embed_dir: dot files left out, a bad name refused")
