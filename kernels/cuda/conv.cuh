// Geometry of one 2-D convolution step, shared by the float convolutions (conv.cu) and the
// INT8 im2col packing (int8.cu); mirrors kernels/cuda/nn.py's Conv2d.
#pragma once

struct Conv2d {
    int n, c, h, w, m, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int act;
    float p0, p1;
};
