// Runs the GPU letterbox's per-pixel code (letterboxPixel.cuh, the exact function the kernel calls) on the CPU,
// so tests/test_plugins.py can compare it with the OpenCV path without a GPU.
// Usage: letterbox_harness IN.u8 OUT.f32 src_h src_w src_c dst_h dst_w dst_c resized_h resized_w top left swap_rb
#include "letterbox/letterboxPixel.cuh"

#include <cstdio>
#include <cstdlib>
#include <vector>

int main(int argc, char** argv)
{
    if (argc != 14)
    {
        std::fprintf(stderr, "usage: %s IN OUT src_h src_w src_c dst_h dst_w dst_c rh rw top left swap_rb\n", argv[0]);
        return 2;
    }
    int v[11];
    for (int i = 0; i < 11; ++i)
    {
        v[i] = std::atoi(argv[3 + i]);
    }
    rgbir::LetterboxGeometry const g{v[0], v[1], v[1] * v[2], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
        114.f, 1.f / 255.f};
    std::vector<uint8_t> src(static_cast<size_t>(g.srcH) * g.srcPitch);
    std::FILE* in = std::fopen(argv[1], "rb");
    if (!in || std::fread(src.data(), 1, src.size(), in) != src.size())
    {
        return 3;
    }
    std::fclose(in);
    std::vector<float> dst(static_cast<size_t>(g.dstC) * g.dstH * g.dstW);
    for (int y = 0; y < g.dstH; ++y)
    {
        for (int x = 0; x < g.dstW; ++x)
        {
            rgbir::letterboxPixel(src.data(), dst.data(), g, x, y);
        }
    }
    std::FILE* out = std::fopen(argv[2], "wb");
    std::fwrite(dst.data(), sizeof(float), dst.size(), out);
    std::fclose(out);
    return 0;
}
