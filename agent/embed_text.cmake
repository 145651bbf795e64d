# cmake -DIN=file -DOUT=header -DNAME=identifier -P embed_text.cmake
# Writes `static const char NAME[] = R"WPEMBED(...)WPEMBED";` holding IN's text.
file(READ "${IN}" content)
string(FIND "${content}" ")WPEMBED" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )WPEMBED")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by agent/embed_text.cmake; do not edit.\n#pragma once\nstatic const char ${NAME}[] = R\"WPEMBED(${content})WPEMBED\";\n")
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
