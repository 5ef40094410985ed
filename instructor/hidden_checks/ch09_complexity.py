# INSTRUCTOR ONLY -- hidden checks of exercises/09_complexity.ipynb.
# Loaded by the grader (attention_course.grading.instructor.load_hidden_checks); never shipped
# to students. Same building blocks as the public checks, on inputs the student never saw.
from attention_course.checks import output_check
from attention_course.checks.chapters.ch09_complexity import _flops_case, _path_case

HIDDEN_CHECKS = {
    "layer_flop_counts": [
        output_check("many more random sizes, kernel sizes up to 17 [H9a]", "values",
                     lambda: [_flops_case(991, m=8, ranges=dict(n=(1, 32), d=(1, 64),
                                                                k=(1, 17)))]),
    ],
    "conv_path_lengths": [
        output_check("a longer sequence, kernel size 7 [H9b]", "values",
                     lambda: [_path_case(992, n=20, k=7)]),
    ],
}
