#version 430

// Compute rasterizer, pass 2 of 3: visibility. One invocation per triangle walks the pixel centres inside it
// and keeps, per pixel, the nearest triangle with one 32-bit atomic max of (depth << id_bits | triangle + 1).
// Mesa's llvmpipe sets primitives up one at a time on one thread; a face mesh of ~150k pixel-sized triangles
// rasterises several times faster this way. Back faces (clockwise in window coordinates) are culled, as in
// the pipeline rasterizer.

layout(local_size_x = 64) in;

layout(std430, binding = 3) readonly buffer Faces { int faces[]; };     // (F, 3) int32
layout(std430, binding = 4) readonly buffer Screen { vec4 screen[]; };  // window x, y, depth [0, 1], clip w
layout(std430, binding = 6) buffer Visibility { uint visibility[]; };  // (H, W), 0 = empty, cleared per frame

uniform int u_faces;
uniform ivec2 u_size;       // framebuffer width, height in pixels
uniform int u_id_bits;      // bits of (triangle index + 1); the depth gets the other 32 - u_id_bits
uniform float u_depth_max;  // 2^(32 - u_id_bits) - 1

// An edge u -> v evaluated with its end points in a canonical order, so that the two triangles sharing the edge
// get bit-identical values of opposite sign: no pixel centre falls through the crack between them.
struct Edge { vec2 a; vec2 d; };

Edge make_edge(vec2 u, vec2 v) {
    bool swap = u.y > v.y || (u.y == v.y && u.x > v.x);
    return swap ? Edge(v, v - u) : Edge(u, v - u);  // swapped: a negated direction from the canonical start
}

float eval_edge(Edge e, vec2 p) {
    return e.d.x * (p.y - e.a.y) - e.d.y * (p.x - e.a.x);
}

void main() {
    int t = int(gl_GlobalInvocationID.x);
    if (t >= u_faces) {
        return;
    }
    vec4 a = screen[faces[3 * t]], b = screen[faces[3 * t + 1]], c = screen[faces[3 * t + 2]];
    if (a.w <= 0.0 || b.w <= 0.0 || c.w <= 0.0) {
        return;  // behind the eye (3D view zoomed into the mesh)
    }
    float area = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x);
    if (!(area > 0.0)) {
        return;  // back-facing, degenerate or NaN
    }
    // Pixel centres (col + 0.5, row + 0.5) inside the bounding box, clipped to the framebuffer.
    vec2 lo = min(a.xy, min(b.xy, c.xy)), hi = max(a.xy, max(b.xy, c.xy));
    ivec2 p0 = max(ivec2(ceil(lo - 0.5)), ivec2(0));
    ivec2 p1 = min(ivec2(floor(hi - 0.5)), u_size - 1);
    Edge e0 = make_edge(b.xy, c.xy), e1 = make_edge(c.xy, a.xy), e2 = make_edge(a.xy, b.xy);
    uint id = uint(t + 1);
    for (int y = p0.y; y <= p1.y; ++y) {
        for (int x = p0.x; x <= p1.x; ++x) {
            vec2 p = vec2(x, y) + 0.5;
            float w0 = eval_edge(e0, p), w1 = eval_edge(e1, p), w2 = eval_edge(e2, p);
            if (w0 < 0.0 || w1 < 0.0 || w2 < 0.0) {
                continue;
            }
            float depth = dot(vec3(w0, w1, w2), vec3(a.z, b.z, c.z)) / (w0 + w1 + w2);
            if (depth < 0.0 || depth > 1.0) {
                continue;  // outside the near and far planes
            }
            uint key = (uint((1.0 - depth) * u_depth_max) << u_id_bits) | id;  // nearer = larger
            atomicMax(visibility[y * u_size.x + x], key);
        }
    }
}
