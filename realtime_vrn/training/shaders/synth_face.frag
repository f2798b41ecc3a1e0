#version 330
// Two-sided Lambert + Blinn-Phong (orthographic view along +z) with up to 4 lights and procedural detail.
uniform int u_nlights;
uniform vec3 u_light_dir[4];
uniform vec3 u_light_col[4];
uniform vec3 u_ambient;
uniform float u_shininess;
uniform float u_detail;       // amplitude of the fine procedural albedo noise
uniform float u_detail_freq;  // its frequency, cycles per cm
in vec3 v_normal;
in vec3 v_albedo;
in float v_spec;
in vec3 v_head;
out vec4 f_colour;

float hash(vec3 p) {
    p = fract(p * 0.3183099 + 0.1);
    p *= 17.0;
    return fract(p.x * p.y * p.z * (p.x + p.y + p.z));
}
float value_noise(vec3 x) {
    vec3 i = floor(x);
    vec3 f = fract(x);
    f = f * f * (3.0 - 2.0 * f);
    return mix(mix(mix(hash(i + vec3(0, 0, 0)), hash(i + vec3(1, 0, 0)), f.x),
                   mix(hash(i + vec3(0, 1, 0)), hash(i + vec3(1, 1, 0)), f.x), f.y),
               mix(mix(hash(i + vec3(0, 0, 1)), hash(i + vec3(1, 0, 1)), f.x),
                   mix(hash(i + vec3(0, 1, 1)), hash(i + vec3(1, 1, 1)), f.x), f.y), f.z);
}
void main() {
    vec3 n = normalize(v_normal);
    if (n.z < 0.0) n = -n;
    float detail = value_noise(v_head * u_detail_freq) + 0.5 * value_noise(v_head * u_detail_freq * 2.7);
    vec3 albedo = clamp(v_albedo * (1.0 + u_detail * (detail / 1.5 - 0.5)), 0.0, 1.0);
    vec3 diffuse = u_ambient;
    vec3 specular = vec3(0.0);
    for (int i = 0; i < u_nlights; ++i) {
        vec3 l = normalize(u_light_dir[i]);
        diffuse += u_light_col[i] * max(dot(n, l), 0.0);
        vec3 h = normalize(l + vec3(0.0, 0.0, 1.0));
        specular += u_light_col[i] * pow(max(dot(n, h), 0.0), u_shininess);
    }
    f_colour = vec4(albedo * diffuse + v_spec * specular, 1.0);
}
