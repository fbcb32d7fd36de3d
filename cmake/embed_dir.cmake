# Turns the files of a folder into a C source defining the table of
# runtime/api/console.h: sp_console_files[] (name, bytes, size) and
# sp_console_nfiles. Usage: cmake -DDIR=folder -DOUT=file.c -P embed_dir.cmake
# Everything embedded is served without a token, so only plain names are
# taken: a dot file (.env, an editor's .swp) is left out, and a name of other
# characters (it would also break the C string) stops the build.
file(GLOB files LIST_DIRECTORIES false RELATIVE "${DIR}" "${DIR}/*")
list(SORT files)
list(FILTER files EXCLUDE REGEX "^\\.")
foreach(name IN LISTS files)
  if(NOT name MATCHES "^[A-Za-z0-9][A-Za-z0-9._-]*$")
    message(FATAL_ERROR "embed_dir: ${DIR}/${name}: a console file name is letters, digits, '.', '_' or '-'")
  endif()
endforeach()
set(body "/* Generated from ${DIR} by cmake/embed_dir.cmake. Do not edit. */\n")
string(APPEND body "#include \"api/console.h\"\n\n")
set(table "")
set(i 0)
foreach(name IN LISTS files)
  file(READ "${DIR}/${name}" hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
  string(APPEND body "static const unsigned char f${i}[] = {${hex}0x00};\n")
  string(APPEND table "    {\"${name}\", f${i}, sizeof f${i} - 1},\n")
  math(EXPR i "${i} + 1")
endforeach()
string(APPEND body "\nconst struct console_file sp_console_files[] = {\n${table}"
       "    {0, 0, 0},\n};\nconst unsigned sp_console_nfiles = ${i};\n")
file(WRITE "${OUT}" "${body}")
