// Quantizes rows of floats with ggml itself (ggml_quantize_chunk, no importance matrix: the path
// llama-quantize takes), so that bench/peers/check_ggml_formats.py can compare tqbench's blocks with ggml's
// on inputs no model has (zero blocks, outliers, ties, tiny scales). Built by that script against the
// peer's own headers and libraries (never vendored).
//   ggml_quantize_rows TYPE IN.f32 ROWS COLS OUT.bin     (TYPE: ggml's name, e.g. q4_K, iq4_nl)
#include <ggml.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <strings.h>
#include <vector>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s TYPE IN.f32 ROWS COLS OUT.bin\n", argv[0]);
    return 2;
  }
  int type = -1;
  for (int t = 0; t < GGML_TYPE_COUNT; ++t) {
    const char* name = ggml_type_name(static_cast<ggml_type>(t));
    if (name && strcasecmp(name, argv[1]) == 0) type = t;
  }
  if (type < 0) {
    std::fprintf(stderr, "unknown ggml type %s\n", argv[1]);
    return 2;
  }
  const long rows = std::atol(argv[3]), cols = std::atol(argv[4]);
  std::vector<float> x(static_cast<std::size_t>(rows * cols));
  FILE* in = std::fopen(argv[2], "rb");
  if (!in || std::fread(x.data(), 4, x.size(), in) != x.size()) {
    std::fprintf(stderr, "cannot read %ld floats from %s\n", rows * cols, argv[2]);
    return 1;
  }
  std::fclose(in);
  const auto t = static_cast<ggml_type>(type);
  ggml_quantize_init(t);
  std::vector<unsigned char> out(ggml_row_size(t, cols) * static_cast<std::size_t>(rows));
  const std::size_t n = ggml_quantize_chunk(t, x.data(), out.data(), 0, rows, cols, nullptr);
  FILE* o = std::fopen(argv[5], "wb");
  if (!o || std::fwrite(out.data(), 1, n, o) != n || std::fclose(o) != 0) {
    std::fprintf(stderr, "cannot write %s\n", argv[5]);
    return 1;
  }
  return 0;
}
