// Loaded between require.js and embed-amd.js (see nb_ipywidgets_js in _config.yml).
// embed-amd.js defines the @jupyter-widgets/* AMD modules; webpack finds their Font Awesome
// fonts next to each module's URL, which RequireJS would otherwise put under the page's own
// folder. Mapping every module to this script's folder makes the fonts load from the files the
// book ships there (the html-manager module's own path is longer, so it is mapped on its own).
(function () {
  var folder = document.currentScript.src.replace(/\/[^\/]*$/, "");
  require.config({
    paths: { "@jupyter-widgets/html-manager/dist": folder, "@jupyter-widgets": folder },
  });
})();
