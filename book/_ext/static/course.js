// Marks display equations wider than the column (after MathJax has typeset them), so that
// course.css can show that they scroll sideways.
(function () {
  function mark() {
    document.querySelectorAll(".bd-article div.math").forEach(function (el) {
      el.classList.toggle("course-wide", el.scrollWidth > el.clientWidth + 1);
    });
  }
  function whenTypeset() {
    if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
      window.MathJax.startup.promise.then(mark);
    } else {
      mark();
    }
  }
  window.addEventListener("load", whenTypeset);
  window.addEventListener("resize", mark);
})();
