// Renders Adaptive Cards the way Teams shows them, with the official
// adaptivecards renderer and a Teams-like host config, in headless Chromium.
// Usage: node docs/cards/render.cjs <cards dir with *.json> <out dir for *.png>
// Prints, as JSON, what a person would see of each card: its text and its
// buttons (label, style, visibility, box within the screenshot).
// `go test ./cards -run Browser -screenshots` renders the cards the code
// builds into docs/cards with it.
"use strict";
const fs = require("fs");
const path = require("path");
const { chromium } = require("playwright-core");

const [cardsDir, outDir] = process.argv.slice(2);
if (!cardsDir || !outDir) {
  console.error("usage: render.cjs <cards-dir> <out-dir>");
  process.exit(2);
}
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const modules = path.join(__dirname, "..", "..", "node_modules");

// Teams draws with Segoe UI and, for Chinese, the system's CJK font (Microsoft
// YaHei on Windows). Noto Sans CJK SC stands in for both where Segoe UI is
// missing, named before the generic families so Chromium takes its glyphs
// rather than whatever fontconfig falls back to (for Chinese, often an empty
// box); cards/render_test.go refuses to write screenshots without it. Noto
// Color Emoji draws the titles' ⏳, ✅ and ⚠️ as Teams does, in colour.
const fontFamily = "'Segoe UI', 'Noto Sans CJK SC', 'Noto Sans', 'Noto Color Emoji', system-ui, sans-serif";

// Teams' light theme, approximately: Segoe UI, its greys and its purple.
const hostConfig = {
  fontFamily,
  spacing: { small: 4, default: 8, medium: 16, large: 20, extraLarge: 24, padding: 16 },
  separator: { lineThickness: 1, lineColor: "#E1DFDD" },
  fontSizes: { small: 12, default: 14, medium: 16, large: 20, extraLarge: 24 },
  fontWeights: { lighter: 300, default: 400, bolder: 600 },
  supportsInteractivity: true,
  imageSizes: { small: 32, medium: 52, large: 100 },
  actions: { maxActions: 6, spacing: "default", buttonSpacing: 8, showCard: { actionMode: "inline" },
    actionsOrientation: "horizontal", actionAlignment: "left" },
  containerStyles: {
    default: { backgroundColor: "#FFFFFF", foregroundColors: {
      default: { default: "#242424", subtle: "#616161" }, accent: { default: "#6264A7", subtle: "#8B8CC7" },
      attention: { default: "#C4314B", subtle: "#D74654" }, good: { default: "#237B4B", subtle: "#2D8F59" },
      warning: { default: "#835C00", subtle: "#A67800" } } },
    emphasis: { backgroundColor: "#F5F5F5", foregroundColors: {
      default: { default: "#242424", subtle: "#616161" }, attention: { default: "#C4314B", subtle: "#D74654" } } },
    good: { backgroundColor: "#E7F2DA" }, attention: { backgroundColor: "#FCF4F6" },
    warning: { backgroundColor: "#FBF6D9" }, accent: { backgroundColor: "#E8EBFA" },
  },
};

const css = `
  body { margin: 0; padding: 16px; background: #EBEBEB; font-family: ${fontFamily}; }
  #card { width: 560px; background: #FFF; border-radius: 6px; box-shadow: 0 1px 2px rgba(0,0,0,.14); overflow: hidden; }
  .ac-pushButton { border: 1px solid #D1D1D1; background: #FFF; border-radius: 4px; padding: 6px 14px;
    font: 600 14px ${fontFamily}; color: #242424; }
  .ac-pushButton.style-positive { background: #5B5FC7; border-color: #5B5FC7; color: #FFF; }
  .ac-pushButton.style-destructive { color: #C4314B; }
  .ac-textBlock p { margin: 0; }
  .ac-textBlock ul { margin: 0; padding-left: 20px; }
`;

(async () => {
  const browser = await chromium.launch({
    executablePath: browserPath,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    // Teams writes a card's {{DATE()}} and {{TIME()}} in the reader's own
    // locale, so each card is drawn in a page of the locale its file names
    // (outcome-rejected.zh-CN.json: zh-CN), English otherwise.
    const pages = new Map();
    const pageFor = async (locale) => {
      if (pages.has(locale)) return pages.get(locale);
      const page = await browser.newPage({ locale, deviceScaleFactor: 1, viewport: { width: 620, height: 800 } });
      // Nothing leaves the machine: card images on other hosts simply do not load.
      await page.route("**/*", (route) => {
        const u = route.request().url();
        return u.startsWith("about:") || u.startsWith("data:") ? route.continue() : route.abort();
      });
      await page.setContent(`<html><head><style>${css}</style></head><body><div id="card"></div></body></html>`);
      await page.addScriptTag({ path: path.join(modules, "markdown-it", "dist", "markdown-it.min.js") });
      await page.addScriptTag({ path: path.join(modules, "adaptivecards", "dist", "adaptivecards.min.js") });
      pages.set(locale, page);
      return page;
    };
    fs.mkdirSync(outDir, { recursive: true });
    const report = [];
    const files = fs.readdirSync(cardsDir).filter((f) => f.endsWith(".json")).sort();
    for (const f of files) {
      const card = JSON.parse(fs.readFileSync(path.join(cardsDir, f), "utf8"));
      const locale = /\.([a-z]{2}-[A-Z]{2})\.json$/.exec(f)?.[1] || "en-US";
      const page = await pageFor(locale);
      const problems = await page.evaluate(([card, hostConfig]) => {
        const AC = window.AdaptiveCards;
        const md = window.markdownit();
        AC.AdaptiveCard.onProcessMarkdown = (text, result) => {
          result.outputHtml = md.render(text);
          result.didProcess = true;
        };
        const ac = new AC.AdaptiveCard();
        ac.hostConfig = new AC.HostConfig(hostConfig);
        ac.parse(card);
        const root = document.getElementById("card");
        root.innerHTML = "";
        const el = ac.render();
        if (!el) return ["renderer returned nothing"];
        root.appendChild(el);
        return [];
      }, [card, hostConfig]);
      if (problems.length) throw new Error(`${f}: ${problems.join("; ")}`);
      await page.locator("#card").screenshot({ path: path.join(outDir, f.replace(/\.json$/, ".png")) });
      report.push(await page.evaluate((name) => {
        const root = document.getElementById("card");
        const origin = root.getBoundingClientRect();
        const buttons = [...root.querySelectorAll("button")].map((b) => {
          const r = b.getBoundingClientRect();
          return {
            label: (b.getAttribute("aria-label") || b.innerText).trim(),
            style: b.classList.contains("style-positive") ? "positive" : b.classList.contains("style-destructive") ? "destructive" : "",
            visible: r.width > 0 && r.height > 0 && getComputedStyle(b).visibility !== "hidden",
            x: r.x - origin.x, y: r.y - origin.y, width: r.width, height: r.height,
          };
        });
        return { name, text: root.innerText, buttons };
      }, f.replace(/\.json$/, "")));
    }
    console.error(`rendered ${files.length} cards to ${outDir}`);
    process.stdout.write(JSON.stringify(report));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
