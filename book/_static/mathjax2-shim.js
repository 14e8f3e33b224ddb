/* The offline widget manager (@jupyter-widgets/html-manager) typesets widget labels with the MathJax 2 API,
 * MathJax.Hub.Queue(["Typeset", MathJax.Hub, element]). This book loads MathJax 3, which has no Hub, so every
 * widget label threw "Cannot read properties of undefined (reading 'Queue')". This script gives MathJax 3 that
 * one entry point, mapped onto MathJax.typesetPromise. It runs before the widget manager's script and installs
 * the shim again at DOMContentLoaded, after the deferred MathJax script has replaced window.MathJax and before
 * the widgets render. */
(function () {
  "use strict";
  function queue(job) {
    var element = Array.isArray(job) ? job[2] : undefined;
    var mathjax = window.MathJax;
    if (!mathjax || typeof mathjax.typesetPromise !== "function") {
      return; // MathJax did not load: leave the label as text
    }
    var ready = mathjax.startup && mathjax.startup.promise ? mathjax.startup.promise : Promise.resolve();
    ready.then(function () {
      return mathjax.typesetPromise(element ? [element] : undefined);
    }).catch(function (error) {
      console.warn("actedit: MathJax could not typeset a widget label", error);
    });
  }
  function install() {
    var mathjax = window.MathJax;
    if (mathjax && !mathjax.Hub) {
      mathjax.Hub = { Queue: queue };
    }
  }
  install();
  document.addEventListener("DOMContentLoaded", install);
})();
