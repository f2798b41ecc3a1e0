#version 330
in float v_z;
out float f_z;
void main() { f_z = v_z; }
