// Drives Microsoft's M365 Agents Playground (a local Teams client) in
// headless Chromium, starting in the personal chat. Each step is a message
// to type, "@<message>" to send it @mentioning the bot (named by $BOT_NAME),
// as group chats and channels require, "click:<button>" to press that button
// on the bot's last card, or "open:<conversation>" to switch to another
// conversation (e.g. "open:Group Chat"). After each it prints, as part of a
// JSON array, the text of the bot's answer (for a click: the card as it was
// replaced; for open: the conversation's name).
// Usage: node playground.cjs <playground url> <step>...
"use strict";
const { chromium } = require("playwright-core");

(async () => {
  const [url, ...messages] = process.argv.slice(2);
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    // Only loopback: fonts and icons from a CDN are not needed.
    await page.route("**/*", (r) => {
      const host = new URL(r.request().url()).hostname;
      return host === "127.0.0.1" || host === "localhost" ? r.continue() : r.abort();
    });
    await page.goto(url);
    const box = page.locator('[data-lexical-editor="true"][contenteditable="true"]').first();
    await box.waitFor({ timeout: 30000 });
    const out = [];
    const cards = page.locator(".fai-OutputCard");
    // Opening a chat installs the bot, which welcomes and then posts what is
    // pending: let that settle so each step's answer is told apart.
    const settle = async () => {
      await cards.first().waitFor({ timeout: 15000 }).catch(() => {});
      for (let n = await cards.count(), same = 0; same < 3; ) {
        await page.waitForTimeout(500);
        const now = await cards.count();
        same = now === n ? same + 1 : 0;
        n = now;
      }
    };
    await settle();
    for (const m of messages) {
      if (m.startsWith("open:")) {
        const name = m.slice("open:".length);
        const before = await cards.first().elementHandle({ timeout: 1000 }).catch(() => null);
        // The conversation list can sit outside the viewport's hit area.
        await page.getByRole("treeitem", { name }).first().dispatchEvent("click");
        // The switch shows when the old conversation's cards are gone; the
        // new one may already show the bot's welcome by the first look.
        await page.waitForFunction((old) => {
          const now = document.querySelectorAll(".fai-OutputCard");
          return now.length === 0 || !old || !old.isConnected || now[0] !== old;
        }, before, { timeout: 10000 });
        await box.waitFor({ timeout: 10000 });
        await settle();
        out.push(name);
        continue;
      }
      if (m.startsWith("click:")) {
        const label = m.slice("click:".length);
        const card = cards.last();
        const button = card.locator(`button[aria-label="${label}"]`);
        await button.click();
        await button.waitFor({ state: "detached", timeout: 30000 });
        out.push(await card.innerText());
        continue;
      }
      const before = await cards.count();
      await box.click();
      if (m.startsWith("@")) {
        await box.type("@");
        // Pick the bot from the typeahead, not a bot message's author label.
        const option = page.getByRole("option", { name: process.env.BOT_NAME });
        await option.first().waitFor({ timeout: 5000 }).catch(() => {});
        if (await option.count()) {
          await option.first().click();
        } else {
          await page.getByText(process.env.BOT_NAME, { exact: true }).last().click();
        }
        await box.type(" " + m.slice(1));
      } else {
        await box.type(m);
      }
      await page.keyboard.press("Enter");
      await cards.nth(before).waitFor({ timeout: 20000 });
      out.push(await cards.nth(before).innerText());
    }
    process.stdout.write(JSON.stringify(out));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
