// What the method page's two scripts share (card.js, fido.js; loaded before both): the status
// line, one flow at a time with the working indicator, and JSON POSTs to the gateway. No text
// lives here: messages come from the page (data-msg-*) or from the gateway in the page's language.
'use strict';
window.ninshoPage = (() => {
  const status = document.getElementById('fido-status');
  const working = document.getElementById('fido-working');

  // An error whose message is meant for the doctor, already in the page's language.
  class ShownError extends Error {}

  const show = (text) => { if (status) status.textContent = text || ''; };

  // POSTs JSON and returns the JSON answer. A refusal throws a ShownError carrying the gateway's
  // message (or `failed` when the answer has none); 401 goes back to the login page.
  async function post(path, body, { lang, failed }) {
    const res = await fetch(`${path}?lang=${encodeURIComponent(lang || 'ja')}`, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(body || {}),
    });
    let data = null;
    try { data = await res.json(); } catch (_) { /* not JSON: an error page */ }
    if (!res.ok || !data) {
      if (res.status === 401) setTimeout(() => location.assign('/login'), 2500);
      throw new ShownError((data && data.message) || failed);
    }
    return data;
  }

  // Runs one flow at a time (card and FIDO alike). A flow resolves to the address to go to next
  // (or nothing); `describe` turns what it threw into the text to show.
  let busy = false;
  async function run(flow, describe) {
    if (busy) return;
    busy = true;
    show('');
    // The notice of the previous step (「…で本人確認しました」) would sit above this flow's outcome.
    for (const n of document.querySelectorAll('p.notice[role=status]')) if (n !== working) n.hidden = true;
    if (working) working.hidden = false;
    try {
      const next = await flow();
      if (next) location.assign(next);
    } catch (e) {
      show(describe(e));
    } finally {
      busy = false;
      if (working) working.hidden = true;
    }
  }

  return { ShownError, show, post, run };
})();
