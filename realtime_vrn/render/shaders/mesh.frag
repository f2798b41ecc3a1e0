#version 330

// Pipeline rasterizer: alpha 1 marks covered pixels for the compositing on the CPU.
in vec3 v_rgb;
out vec4 f_color;

void main() {
    f_color = vec4(v_rgb, 1.0);
}
