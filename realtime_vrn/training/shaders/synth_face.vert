#version 330
// Synthetic face, colour pass. in_pos: crop pixels x, y (y down) and depth index z (higher = nearer).
uniform vec2 u_size;     // render target side in crop pixels (before supersampling), both axes
uniform vec2 u_zrange;   // (near, far) depth indices mapped to the clip planes, near > far
in vec3 in_pos;
in vec3 in_normal;       // camera frame: x right, y up, z towards the viewer
in vec3 in_albedo;       // linear RGB in [0, 1]
in float in_spec;        // specular strength
in vec3 in_head;         // head-frame position (cm), seeds the procedural skin detail
out vec3 v_normal;
out vec3 v_albedo;
out float v_spec;
out vec3 v_head;
void main() {
    vec2 ndc = vec2((in_pos.x + 0.5) / u_size.x * 2.0 - 1.0, 1.0 - (in_pos.y + 0.5) / u_size.y * 2.0);
    float z = 1.0 - 2.0 * (in_pos.z - u_zrange.y) / (u_zrange.x - u_zrange.y);
    gl_Position = vec4(ndc, z, 1.0);  // NDC z: -1 at u_zrange.x (near), +1 at u_zrange.y (far)
    v_normal = in_normal;
    v_albedo = in_albedo;
    v_spec = in_spec;
    v_head = in_head;
}
