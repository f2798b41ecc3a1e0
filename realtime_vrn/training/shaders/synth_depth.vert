#version 330
// Ground-truth volume pass: rasterise the closed face solid and write its depth index.
uniform vec2 u_size;
uniform vec2 u_zrange;
in vec3 in_pos;   // crop pixels x, y (y down) and depth index z (higher = nearer)
out float v_z;
void main() {
    vec2 ndc = vec2((in_pos.x + 0.5) / u_size.x * 2.0 - 1.0, 1.0 - (in_pos.y + 0.5) / u_size.y * 2.0);
    float z = 1.0 - 2.0 * (in_pos.z - u_zrange.y) / (u_zrange.x - u_zrange.y);
    gl_Position = vec4(ndc, z, 1.0);  // NDC z: -1 at u_zrange.x (near), +1 at u_zrange.y (far)
    v_z = in_pos.z;
}
