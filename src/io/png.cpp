#include "io/png.h"

#include <algorithm>
#include <fstream>

#include "core/check.h"

namespace longctx {

namespace {

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static uint32_t table[256];
  static bool init = false;
  if (!init) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    init = true;
  }
  crc = ~crc;
  for (size_t i = 0; i < n; i++) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

void put32(std::vector<uint8_t>& v, uint32_t x) {
  for (int s = 24; s >= 0; s -= 8) v.push_back(uint8_t(x >> s));
}

void chunk(std::ofstream& f, const char* type, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> c;
  put32(c, uint32_t(data.size()));
  c.insert(c.end(), type, type + 4);
  c.insert(c.end(), data.begin(), data.end());
  put32(c, crc32(c.data() + 4, c.size() - 4));
  f.write(reinterpret_cast<const char*>(c.data()), std::streamsize(c.size()));
}

// zlib stream of stored (uncompressed) deflate blocks.
std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> z = {0x78, 0x01};
  uint32_t a = 1, b = 0;
  for (uint8_t x : raw) a = (a + x) % 65521, b = (b + a) % 65521;
  size_t off = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - off);
    z.push_back(off + n == raw.size() ? 1 : 0);
    z.push_back(uint8_t(n)), z.push_back(uint8_t(n >> 8));
    z.push_back(uint8_t(~n)), z.push_back(uint8_t(~n >> 8));
    z.insert(z.end(), raw.begin() + long(off), raw.begin() + long(off + n));
    off += n;
  } while (off < raw.size());
  put32(z, (b << 16) | a);
  return z;
}

}  // namespace

void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb) {
  CHECK(width > 0 && height > 0 && rgb.size() == size_t(width) * size_t(height) * 3, path,
        ": image data does not match ", width, "x", height);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  CHECK(f.good(), path, ": cannot write");
  const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  f.write(reinterpret_cast<const char*>(sig), 8);
  std::vector<uint8_t> ihdr;
  put32(ihdr, uint32_t(width)), put32(ihdr, uint32_t(height));
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, RGB, deflate, no filter, no interlace
  chunk(f, "IHDR", ihdr);
  std::vector<uint8_t> raw;
  raw.reserve(size_t(height) * (size_t(width) * 3 + 1));
  for (int y = 0; y < height; y++) {
    raw.push_back(0);  // filter: none
    raw.insert(raw.end(), rgb.begin() + long(size_t(y) * size_t(width) * 3),
               rgb.begin() + long(size_t(y + 1) * size_t(width) * 3));
  }
  chunk(f, "IDAT", zlib_stored(raw));
  chunk(f, "IEND", {});
  CHECK(f.good(), path, ": write failed");
}

void write_heatmap_png(const std::string& path, const std::vector<std::vector<double>>& values, int cell_px) {
  CHECK(!values.empty() && !values[0].empty(), path, ": empty heat-map");
  const int rows = int(values.size()), cols = int(values[0].size());
  const int W = cols * cell_px, H = rows * cell_px;
  std::vector<uint8_t> rgb(size_t(W) * size_t(H) * 3, 255);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      const double v = std::clamp(values[size_t(y / cell_px)][size_t(x / cell_px)], 0.0, 1.0);
      const bool grid = x % cell_px == 0 || y % cell_px == 0;
      uint8_t* p = &rgb[(size_t(y) * size_t(W) + size_t(x)) * 3];
      p[0] = grid ? 255 : uint8_t(255 * std::min(1.0, 2 * (1 - v)));  // red fades above 0.5
      p[1] = grid ? 255 : uint8_t(200 * std::min(1.0, 2 * v));        // green grows to 0.5
      p[2] = grid ? 255 : 40;
    }
  write_png(path, W, H, rgb);
}

}  // namespace longctx
