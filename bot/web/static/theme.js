// Inside Telegram: the Mini App's themeParams (kept by /app); elsewhere the system's scheme.
(function () {
  var root = document.documentElement;
  var theme = null;
  try { theme = JSON.parse(sessionStorage.getItem("tgTheme") || "null"); } catch (e) { theme = null; }
  var names = {bg_color: "--bg", text_color: "--text", hint_color: "--hint", link_color: "--link",
               button_color: "--button", button_text_color: "--button-text",
               secondary_bg_color: "--card"};
  var dark = window.matchMedia && window.matchMedia("(prefers-color-scheme: dark)").matches;
  if (theme) {
    Object.keys(names).forEach(function (k) {
      if (theme[k]) { root.style.setProperty(names[k], theme[k]); }
    });
    if (theme.bg_color) {
      var c = theme.bg_color.replace("#", "");
      var rgb = [0, 2, 4].map(function (i) { return parseInt(c.substr(i, 2), 16); });
      dark = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]) < 128;
    }
  }
  root.dataset.theme = dark ? "dark" : "light";
})();
// Tell the Telegram client the page is ready and may fill the screen (what its SDK's
// ready() and expand() post; outside Telegram there is no one to tell).
(function () {
  function post(type) {
    try {
      if (window.TelegramWebviewProxy) {
        window.TelegramWebviewProxy.postEvent(type, "");
      } else if (window.parent !== window) {
        window.parent.postMessage(JSON.stringify({eventType: type, eventData: ""}), "*");
      }
    } catch (e) { /* not inside Telegram */ }
  }
  if (sessionStorage.getItem("tgTheme") !== null || window.TelegramWebviewProxy) {
    post("web_app_ready");
    post("web_app_expand");
  }
})();
