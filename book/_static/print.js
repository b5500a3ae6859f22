// The book on paper (`make pdf`, studylib.study.pdf): printing opens every folded table
// (sphinx-design dropdowns); folded code cells stay folded.
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details.sd-dropdown").forEach(function (d) { d.open = true; });
});
