// Marching cubes on the VRN's low-resolution logits, with the release's bilinear x4 upsample
// (align_corners=True) evaluated on the fly: the full (D, H, W) volume is never stored.
//
// Loaded by realtime_vrn/surface/gpu/mc_cupy.py with cupy.RawModule and compiled with --fmad=false, so that every
// float operation rounds exactly like its NumPy twin, realtime_vrn/surface/gpu/mc_twin.py, which documents the
// phases, the output order and the coordinate frame. The exclusive scans between the phases are
// cupy.cumsum calls. The lookup tables (realtime_vrn/surface/gpu/mc_tables.py) are passed in as device arrays.
//
// Every kernel is a grid-stride loop over independent items (no shared memory, no atomics, no
// __syncthreads), so any launch configuration gives the same result, and the file also compiles as plain
// C++ for the CPU emulation in tests/test_gpu_kernels.py. Keep it that way: no CUDA headers, no
// intrinsics beyond the ones that test defines.
//
// Grid: D x H x W points, linear index p = (z * H + y) * W + x. Low-res logits L: D x h x w floats.
// Upsample tables: idx = [x0 (W), x1 (W), y0 (H), y1 (H)] ints, wts = [wx0, wx1, wy0, wy1] floats alike.

typedef unsigned char u8;

#define GRID_STRIDE(i, n) \
    for (int i = (int)(blockIdx.x * blockDim.x + threadIdx.x); i < (n); i += (int)(blockDim.x * gridDim.x))

struct Field {
    const float* __restrict__ logits;
    const int* __restrict__ idx;
    const float* __restrict__ wts;
    int D, H, W, h, w;
};

// The upsampled logit at grid point (z, y, x): two row blends, then one column blend (as mc_twin.field_at).
__device__ __forceinline__ float field_at(const Field& f, int z, int y, int x) {
    const int x0 = f.idx[x], x1 = f.idx[f.W + x];
    const int y0 = f.idx[2 * f.W + y], y1 = f.idx[2 * f.W + f.H + y];
    const float wx0 = f.wts[x], wx1 = f.wts[f.W + x];
    const float wy0 = f.wts[2 * f.W + y], wy1 = f.wts[2 * f.W + f.H + y];
    const float* slab = f.logits + (long long)z * f.h * f.w;
    const float r0 = wx0 * slab[y0 * f.w + x0] + wx1 * slab[y0 * f.w + x1];
    const float r1 = wx0 * slab[y1 * f.w + x0] + wx1 * slab[y1 * f.w + x1];
    return wy0 * r0 + wy1 * r1;
}

// d(field)/d(index) along one axis at (z, y, x) where the field is `here`: central, one-sided at the border.
__device__ __forceinline__ float gradient_at(const Field& f, int z, int y, int x, int axis, float here) {
    int c, n;
    int dz = 0, dy = 0, dx = 0;
    if (axis == 0) { c = x; n = f.W; dx = 1; }
    else if (axis == 1) { c = y; n = f.H; dy = 1; }
    else { c = z; n = f.D; dz = 1; }
    const int up = c + 1 < n ? 1 : 0;    // steps that stay inside the grid
    const int down = c > 0 ? 1 : 0;
    const float f_up = field_at(f, z + up * dz, y + up * dy, x + up * dx);
    const float f_down = field_at(f, z - down * dz, y - down * dy, x - down * dx);
    if (c == 0) return f_up - here;
    if (c == n - 1) return here - f_down;
    return (f_up - f_down) * 0.5f;
}

__device__ __forceinline__ int popcount3(int m) { return (m & 1) + ((m >> 1) & 1) + ((m >> 2) & 1); }

// Phase 1: per grid point, the case of the cell it starts (0 where none starts) and its crossed +x, +y, +z
// edges (bits 0, 1, 2), with the counts that the scans add up.
extern "C" __global__ void mc_classify(const float* __restrict__ logits, const int* __restrict__ idx,
                                       const float* __restrict__ wts, int D, int H, int W, int h, int w,
                                       const u8* __restrict__ tri_counts, u8* __restrict__ cases,
                                       u8* __restrict__ edges, u8* __restrict__ nverts, u8* __restrict__ ntris,
                                       u8* __restrict__ active) {
    const Field f = {logits, idx, wts, D, H, W, h, w};
    const int n = D * H * W;
    GRID_STRIDE(p, n) {
        const int x = p % W, y = (p / W) % H, z = p / (W * H);
        const int x1 = x + 1 < W ? x + 1 : x, y1 = y + 1 < H ? y + 1 : y, z1 = z + 1 < D ? z + 1 : z;
        // Corner k of the cell at (dx, dy, dz) = bits of mc_tables.CORNER_OFFSETS; clamped at the border.
        const int in0 = field_at(f, z, y, x) > 0.0f;
        const int in1 = field_at(f, z, y, x1) > 0.0f;
        const int in2 = field_at(f, z, y1, x1) > 0.0f;
        const int in3 = field_at(f, z, y1, x) > 0.0f;
        const int in4 = field_at(f, z1, y, x) > 0.0f;
        const int in5 = field_at(f, z1, y, x1) > 0.0f;
        const int in6 = field_at(f, z1, y1, x1) > 0.0f;
        const int in7 = field_at(f, z1, y1, x) > 0.0f;
        int e = 0;
        if (x + 1 < W && in0 != in1) e |= 1;
        if (y + 1 < H && in0 != in3) e |= 2;
        if (z + 1 < D && in0 != in4) e |= 4;
        int c = 0;
        if (x + 1 < W && y + 1 < H && z + 1 < D)
            c = in0 | in1 << 1 | in2 << 2 | in3 << 3 | in4 << 4 | in5 << 5 | in6 << 6 | in7 << 7;
        const int t = tri_counts[c];
        cases[p] = (u8)c;
        edges[p] = (u8)e;
        nverts[p] = (u8)popcount3(e);
        ntris[p] = (u8)t;
        active[p] = (u8)(t > 0);
    }
}

// Phase 3: scatter the active cells' point indices to their scanned slots (ascending order).
extern "C" __global__ void mc_compact(const u8* __restrict__ active, const int* __restrict__ active_offsets,
                                      int n, int* __restrict__ active_ids) {
    GRID_STRIDE(p, n) {
        if (active[p]) active_ids[active_offsets[p]] = p;
    }
}

// Phase 4: one vertex per crossed edge, at vertex id vert_offsets[p] + (rank of the edge among p's edges).
// positions / normals: (capacity, 3) floats; ids >= capacity are counted but not written.
extern "C" __global__ void mc_vertices(const float* __restrict__ logits, const int* __restrict__ idx,
                                       const float* __restrict__ wts, int D, int H, int W, int h, int w,
                                       const u8* __restrict__ edges, const int* __restrict__ vert_offsets,
                                       int capacity, float* __restrict__ positions, float* __restrict__ normals) {
    const Field f = {logits, idx, wts, D, H, W, h, w};
    const int n = D * H * W;
    GRID_STRIDE(p, n) {
        const int e = edges[p];
        if (e == 0) continue;
        const int x = p % W, y = (p / W) % H, z = p / (W * H);
        const float f0 = field_at(f, z, y, x);
        const float g0x = gradient_at(f, z, y, x, 0, f0);
        const float g0y = gradient_at(f, z, y, x, 1, f0);
        const float g0z = gradient_at(f, z, y, x, 2, f0);
        int id = vert_offsets[p];
        for (int axis = 0; axis < 3; ++axis) {
            if (!((e >> axis) & 1)) continue;
            const int xb = x + (axis == 0), yb = y + (axis == 1), zb = z + (axis == 2);
            const float f1 = field_at(f, zb, yb, xb);
            const float t = f0 / (f0 - f1);  // opposite sides of 0: never a division by zero
            const float g1x = gradient_at(f, zb, yb, xb, 0, f1);
            const float g1y = gradient_at(f, zb, yb, xb, 1, f1);
            const float g1z = gradient_at(f, zb, yb, xb, 2, f1);
            const float gx = g0x + t * (g1x - g0x);
            const float gy = g0y + t * (g1y - g0y);
            const float gz = g0z + t * (g1z - g0z);
            const float nx = -gx, ny = -gy, nz = -(gz / 0.5f);  // outward, z in crop units (z = index * 0.5)
            const float norm = sqrtf(nx * nx + ny * ny + nz * nz);
            const float safe = norm > 0.0f ? norm : 1.0f;
            if (id < capacity) {
                float* pos = positions + 3 * (long long)id;
                pos[0] = axis == 0 ? (float)x + t : (float)x;
                pos[1] = axis == 1 ? (float)y + t : (float)y;
                pos[2] = (axis == 2 ? (float)z + t : (float)z) * 0.5f;
                float* nrm = normals + 3 * (long long)id;
                nrm[0] = norm > 0.0f ? nx / safe : 0.0f;
                nrm[1] = norm > 0.0f ? ny / safe : 0.0f;
                nrm[2] = norm > 0.0f ? nz / safe : 0.0f;
            }
            ++id;
        }
    }
}

// Phase 5: per active cell, its table triangles at tri_offsets[cell]; edge -> vertex id of its owner point.
// n_active is read on the device (active_offsets[n_points]), so the launch needs no host round trip.
// tri_table: (256, 16) signed chars, -1 terminated; edge_owner: (12, 3) ints (dx, dy, dz); edge_axis: (12,).
extern "C" __global__ void mc_triangles(const u8* __restrict__ cases, const u8* __restrict__ edges,
                                        const int* __restrict__ active_ids, const int* __restrict__ n_active,
                                        const int* __restrict__ tri_offsets, const int* __restrict__ vert_offsets,
                                        const signed char* __restrict__ tri_table,
                                        const int* __restrict__ edge_owner, const int* __restrict__ edge_axis,
                                        int H, int W, int capacity, int* __restrict__ faces) {
    const int count = *n_active;
    GRID_STRIDE(k, count) {
        const int cell = active_ids[k];
        const signed char* row = tri_table + 16 * cases[cell];
        int slot = 3 * tri_offsets[cell];
        for (int j = 0; j < 15 && row[j] >= 0; ++j, ++slot) {
            const int edge = row[j];
            const int owner = cell + (edge_owner[3 * edge + 2] * H + edge_owner[3 * edge + 1]) * W
                              + edge_owner[3 * edge];
            const int axis = edge_axis[edge];
            const int below = edges[owner] & ((1 << axis) - 1);  // the owner's lower-axis edges come first
            if (slot < 3 * (long long)capacity) faces[slot] = vert_offsets[owner] + popcount3(below);
        }
    }
}

// The three totals the host reads once per frame: vertices, triangles, active cells.
extern "C" __global__ void mc_totals(const int* __restrict__ vert_offsets, const int* __restrict__ tri_offsets,
                                     const int* __restrict__ active_offsets, int n, int* __restrict__ totals) {
    if (blockIdx.x == 0 && threadIdx.x == 0) {
        totals[0] = vert_offsets[n];
        totals[1] = tri_offsets[n];
        totals[2] = active_offsets[n];
    }
}
