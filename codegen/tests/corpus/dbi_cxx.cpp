// C++ run translated (codegen/tests/dbi_libraries.rs): exceptions through
// several frames, virtual calls, std::sort and std::map.
#include <algorithm>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {
struct Shape {
    virtual ~Shape() = default;
    virtual long area() const = 0;
};
struct Rect : Shape {
    long w, h;
    Rect(long w, long h) : w(w), h(h) {}
    long area() const override { return w * h; }
};
struct Tri : Shape {
    long b, h;
    Tri(long b, long h) : b(b), h(h) {}
    long area() const override { return b * h / 2; }
};

__attribute__((noinline)) long deep_throw(int depth) {
    if (depth == 0) throw std::runtime_error("bottom");
    std::string keep = "frame" + std::to_string(depth);
    return deep_throw(depth - 1) + (long)keep.size();
}
}  // namespace

extern "C" long cxx_exceptions(void) {
    long caught = 0;
    for (int i = 0; i < 200; i++) {
        try {
            deep_throw(i % 12);
        } catch (const std::runtime_error &e) {
            caught += (long)std::string(e.what()).size() + i;
        }
    }
    return caught;
}

extern "C" long cxx_virtual_sort_map(void) {
    std::vector<std::unique_ptr<Shape>> shapes;
    for (long i = 0; i < 3000; i++) {
        if (i % 3) shapes.push_back(std::make_unique<Rect>(i % 17, i % 13 + 1));
        else shapes.push_back(std::make_unique<Tri>(i % 19, i % 7 + 2));
    }
    std::sort(shapes.begin(), shapes.end(),
              [](const auto &a, const auto &b) { return a->area() < b->area(); });
    std::map<long, long> histogram;
    for (const auto &s : shapes) histogram[s->area() % 50]++;
    long h = 0;
    for (const auto &[k, v] : histogram) h = h * 31 + k * v;
    return h + shapes.front()->area() + shapes.back()->area();
}
