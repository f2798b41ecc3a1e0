// Per-vertex shading shared by both rasterizers (moderngl resolves the include from Context.includes).
// Twin of realtime_vrn.render.shading.shade (NumPy). Triangles of a face mesh are about a pixel in size, so
// per-vertex (Gouraud) lighting looks the same as per-pixel lighting and keeps rasterisation cheap.

// Shading modes, in sync with realtime_vrn.render.shading.SHADING_MODES.
const int SHADE_COLOR = 0;    // per-vertex colour, Lambert + Blinn-Phong specular
const int SHADE_NORMALS = 1;  // view-space normal as colour (n * 0.5 + 0.5), unlit
const int SHADE_CLAY = 2;     // uniform clay colour, Lambert + Blinn-Phong specular

uniform mat4 u_mvp;            // image frame -> clip space (y flipped: framebuffer row 0 = image row 0)
uniform mat3 u_normal_matrix;  // image-frame normal -> view space (x right, y up, z towards the viewer)
uniform int u_shading;
uniform bool u_has_color;
uniform vec3 u_clay;           // RGB in [0, 1]
uniform vec3 u_light_dir;      // unit vector towards the light, view space
uniform vec3 u_half_dir;       // unit Blinn half vector of the light and the viewer (+z), view space
uniform float u_ambient;
uniform float u_diffuse;
uniform float u_specular;
uniform float u_shininess;

vec3 shade(vec3 normal, vec3 color) {
    vec3 n = normalize(u_normal_matrix * normal);
    if (u_shading == SHADE_NORMALS) {
        return n * 0.5 + 0.5;
    }
    vec3 base = (u_shading == SHADE_COLOR && u_has_color) ? color : u_clay;
    float lambert = max(dot(n, u_light_dir), 0.0);
    float spec = lambert > 0.0 ? pow(max(dot(n, u_half_dir), 0.0), u_shininess) : 0.0;
    return clamp(base * (u_ambient + u_diffuse * lambert) + vec3(u_specular * spec), 0.0, 1.0);
}
