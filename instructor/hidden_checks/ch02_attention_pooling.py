# INSTRUCTOR ONLY -- hidden checks of exercises/02_attention_pooling.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
import torch

from attention_course.checks import output_check
from attention_course.checks.chapters.ch02_attention_pooling import _box_case, _loo_case, _nw_case

f32, f64 = torch.float32, torch.float64


def _noncontiguous_values(seed):
    case = _nw_case(seed, f64, nq=6, nk=9, dv=4)
    q, k, v, h = case.args
    v = v.T.contiguous().T  # same numbers, column-major: not contiguous
    case.args, case.label = (q, k, v, h), case.label + ", values not contiguous"
    return case


HIDDEN_CHECKS = {
    "nw_gaussian": [
        output_check("long inputs in float32 (Nq=300, Nk=500) [H1]", "values",
                     lambda: [_nw_case(901, f32, nq=300, nk=500, dv=3)]),
        output_check("values given as a non-contiguous tensor [H2]", "edge cases",
                     lambda: [_noncontiguous_values(902)]),
    ],
    "boxcar_weights": [
        output_check("many queries outside every window, float32 [H3]", "edge cases",
                     lambda: [_box_case(s, f32, nq=10, nk=15, h=0.3, empty=True)
                              for s in (903, 904)]),
    ],
    "loo_mse": [
        output_check("two hundred points in float32 [H4]", "values",
                     lambda: [_loo_case(905, f32, n=200)]),
    ],
}
