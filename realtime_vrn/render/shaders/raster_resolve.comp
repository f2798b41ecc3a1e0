#version 430

// Compute rasterizer, pass 3 of 3: one invocation per pixel of the mesh's screen rectangle colours the pixel
// with the visible triangle's per-vertex colours, interpolated at the pixel centre. The output is an (H, W)
// array of RGBA8 words, row 0 = image row 0, alpha 255 where covered (cleared to the background, alpha 0).

layout(local_size_x = 8, local_size_y = 8) in;

layout(std430, binding = 3) readonly buffer Faces { int faces[]; };
layout(std430, binding = 4) readonly buffer Screen { vec4 screen[]; };
layout(std430, binding = 5) readonly buffer Shaded { uint shaded[]; };       // packUnorm4x8(rgb, 1)
layout(std430, binding = 6) readonly buffer Visibility { uint visibility[]; };
layout(std430, binding = 7) writeonly buffer Color { uint color[]; };         // packUnorm4x8(rgb, 1)

uniform ivec4 u_rect;   // x, y, width, height of the pixels to resolve
uniform int u_width;    // framebuffer width in pixels
uniform uint u_id_mask; // (1 << id_bits) - 1

void main() {
    ivec2 pixel = u_rect.xy + ivec2(gl_GlobalInvocationID.xy);
    if (any(greaterThanEqual(gl_GlobalInvocationID.xy, uvec2(u_rect.zw)))) {
        return;
    }
    int index = pixel.y * u_width + pixel.x;
    uint key = visibility[index];
    if (key == 0u) {
        return;
    }
    int t = int(key & u_id_mask) - 1;
    int i0 = faces[3 * t], i1 = faces[3 * t + 1], i2 = faces[3 * t + 2];
    vec2 a = screen[i0].xy, b = screen[i1].xy, c = screen[i2].xy, p = vec2(pixel) + 0.5;
    vec3 w = max(vec3((c.x - b.x) * (p.y - b.y) - (c.y - b.y) * (p.x - b.x),
                      (a.x - c.x) * (p.y - c.y) - (a.y - c.y) * (p.x - c.x),
                      (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x)), 0.0);
    float sum = w.x + w.y + w.z;
    w = sum > 0.0 ? w / sum : vec3(1.0 / 3.0);
    vec3 rgb = w.x * unpackUnorm4x8(shaded[i0]).rgb + w.y * unpackUnorm4x8(shaded[i1]).rgb
             + w.z * unpackUnorm4x8(shaded[i2]).rgb;
    color[index] = packUnorm4x8(vec4(rgb, 1.0));
}
