#version 330

// Pipeline rasterizer (OpenGL 3.3, e.g. macOS): vertex stage.
#include "shading.glsl"

in vec3 in_position;  // image frame: x, y frame pixels (y down), z frame pixels (larger = nearer)
in vec3 in_normal;
in vec3 in_color;     // RGB in [0, 1] (uint8 normalised by the vertex fetch)

out vec3 v_rgb;

void main() {
    gl_Position = u_mvp * vec4(in_position, 1.0);
    v_rgb = shade(in_normal, in_color);
}
