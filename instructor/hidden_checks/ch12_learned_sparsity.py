# INSTRUCTOR ONLY -- hidden checks of exercises/12_learned_sparsity.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch12_learned_sparsity import _hash_case, _route_case, _sk_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "lsh_buckets": [
        output_check("sixteen buckets, eight rounds, wide heads [H1201]", "values",
                     lambda: [_hash_case(1921, f64, n_buckets=16, rounds=8,
                                         sizes=dict(B=2, H=2, N=33, D=32))]),
    ],
    "route_to_centroids": [
        output_check("32 clusters per head in 16 dimensions [H1203]", "values",
                     lambda: [_route_case(1923, f64, per_head=True, clusters=32,
                                          sizes=dict(B=2, H=4, N=40, D=16))]),
    ],
    "sinkhorn_log": [
        output_check("a 32 x 32 matrix, 50 iterations, float32 [H1202]", "values",
                     lambda: [_sk_case(1922, f32, shape=(2, 32, 32), n_iters=50)]),
    ],
}
