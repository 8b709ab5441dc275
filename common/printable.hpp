#pragma once
// Text that came from a file (a spec, a result file's attributes and cells, a model's tokens) on its way
// to a terminal: control characters are shown as \xNN so that an escape sequence hidden in an input
// cannot clear the screen, retitle the window or fake output. Bytes >= 0x80 (UTF-8) pass unchanged.
#include <string>
#include <string_view>

namespace tqb {

// Every byte below 0x20 and 0x7f becomes "\xNN"; with keep_newlines, '\n' and '\t' stay (multi-line
// error messages, generated text).
std::string printable(std::string_view text, bool keep_newlines = false);

}  // namespace tqb
