// A minimal PNG writer (8-bit RGB, uncompressed deflate blocks): enough for
// heat-maps without an image library.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace longctx {

// rgb: height rows of width * 3 bytes.
void write_png(const std::string& path, int width, int height, const std::vector<uint8_t>& rgb);

// A heat-map of values in [0, 1] (rows x cols), each cell cell_px square,
// red (0) through yellow to green (1), with thin grid lines.
void write_heatmap_png(const std::string& path, const std::vector<std::vector<double>>& values,
                       int cell_px = 48);

}  // namespace longctx
