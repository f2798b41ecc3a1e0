#version 330

// Shows a top-down RGB image (row 0 = top) in a window, scaled into the letterboxed viewport.
uniform sampler2D u_image;
uniform vec4 u_viewport;  // x, y, width, height of the image rectangle in window pixels (y up)

out vec4 f_color;

void main() {
    vec2 uv = (gl_FragCoord.xy - u_viewport.xy) / u_viewport.zw;
    f_color = vec4(texture(u_image, vec2(uv.x, 1.0 - uv.y)).rgb, 1.0);
}
