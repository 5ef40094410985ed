# INSTRUCTOR ONLY -- hidden checks of exercises/17_benchmark.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch17_benchmark import _fit_case, _rfe_case, _uniform_case

f32, f64 = torch.float32, torch.float64


HIDDEN_CHECKS = {
    "relative_frobenius_error": [
        output_check("a 1-d pair of 300 entries, float32 [H1701]", "values",
                     lambda: [_rfe_case(1971, f32, shape=(300,))]),
    ],
    "uniform_attention": [
        output_check("causal, 70 positions, wide values, float32 [H1702]", "masks",
                     lambda: [_uniform_case(1972, f32, causal=True,
                                            sizes=dict(B=2, H=3, N=70, Dv=16))]),
    ],
    "fit_exponent": [
        output_check("twelve noisy sizes, float64 [H1703]", "values",
                     lambda: [_fit_case(1973, f64, points=12, noise=0.5)]),
    ],
}
