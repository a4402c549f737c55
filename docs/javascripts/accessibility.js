// What the theme and the Swagger UI frame leave unnamed or out of keyboard reach
// (tests/docs/test_site_browser.py runs axe-core). document$ is the theme's page signal.
document$.subscribe(() => {
  // The search is a dialog without a name.
  document.querySelectorAll(".md-search[role=dialog]").forEach((dialog) => {
    dialog.setAttribute("aria-label", "Search");
  });
  // A wide table scrolls in its own box: keyboard users must be able to reach and scroll it.
  document.querySelectorAll(".md-typeset__scrollwrap").forEach((box) => {
    box.setAttribute("tabindex", "0");
    box.setAttribute("role", "region");
    box.setAttribute("aria-label", "Table, scrolls sideways");
  });
  // The API reference's frame.
  document.querySelectorAll("iframe.swagger-ui-iframe").forEach((frame) => {
    frame.setAttribute("title", "API reference: every route of openapi.yaml");
  });
});
