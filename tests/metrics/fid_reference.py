"""Reference FID/KID for tests/metrics/fid_test.cc: scipy.linalg.sqrtm as in pytorch-fid / NVlabs.

usage: fid_reference.py FEATURES.safetensors  -> prints "fid <value>" and "mmd2 <value>"
(the file holds `a` and `b`, [N, D]; MMD² with the cubic kernel over the full sets).
"""
import os
import sys

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python"))
import safetensors_io  # noqa: E402

t = safetensors_io.load(sys.argv[1])
a = t["a"].double().numpy()
b = t["b"].double().numpy()
mu1, mu2 = a.mean(0), b.mean(0)
s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
covmean = covmean.real
fid = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
print("fid %.12g" % fid)
d = a.shape[1]
m = a.shape[0]
kxx = (a @ a.T / d + 1) ** 3
kyy = (b @ b.T / d + 1) ** 3
kxy = (a @ b.T / d + 1) ** 3
mmd = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()
print("mmd2 %.12g" % mmd)
