#version 430

// Compute rasterizer, pass 1 of 3: transform and shade every vertex once.
#include "shading.glsl"

layout(local_size_x = 64) in;

layout(std430, binding = 0) readonly buffer Positions { float positions[]; };  // (V, 3) float32, image frame
layout(std430, binding = 1) readonly buffer Normals { float normals[]; };      // (V, 3) float32
layout(std430, binding = 2) readonly buffer Colors { uint colors[]; };         // (V, 3) uint8 RGB, packed bytes
layout(std430, binding = 4) writeonly buffer Screen { vec4 screen[]; };        // window x, y, depth [0, 1], w
layout(std430, binding = 5) writeonly buffer Shaded { uint shaded[]; };        // packUnorm4x8(rgb, 1)

uniform int u_vertices;
uniform vec2 u_size;  // framebuffer width, height in pixels

float color_byte(int i) {
    return float((colors[i >> 2] >> (8 * (i & 3))) & 0xFFu) / 255.0;
}

void main() {
    int i = int(gl_GlobalInvocationID.x);
    if (i >= u_vertices) {
        return;
    }
    vec4 clip = u_mvp * vec4(positions[3 * i], positions[3 * i + 1], positions[3 * i + 2], 1.0);
    vec3 ndc = clip.xyz / clip.w;
    // Window coordinates as OpenGL defines them: pixel (col, row) has its centre at (col + 0.5, row + 0.5).
    screen[i] = vec4((ndc.xy * 0.5 + 0.5) * u_size, ndc.z * 0.5 + 0.5, clip.w);
    vec3 normal = vec3(normals[3 * i], normals[3 * i + 1], normals[3 * i + 2]);
    vec3 color = vec3(color_byte(3 * i), color_byte(3 * i + 1), color_byte(3 * i + 2));
    shaded[i] = packUnorm4x8(vec4(shade(normal, color), 1.0));
}
