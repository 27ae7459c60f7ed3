// Browser test of card login through the real pages (issue 24): Debian's headless Chromium with the
// clinic client certificate, the real card agent (`card-agent`) and simulated cards (`card-sim`) in
// a private pcscd with the vpcd virtual reader.
//
// Flow: log in → the management page → link a My Number card with a registration code → the
// identity-check page (PIN before the card buttons) → wrong PIN (tries left) → log in with the card
// (the card's own notice, the session) → no card → agent not running → agent refusing this origin
// (the page says which origin to add) → link a FIDO authenticator (second code, after the card
// proof) → link an HPKI card by confirming with FIDO → log in with the HPKI card → English pages
// (card names translated) → end the session. Screenshots of each page (ja/en, desktop/390 px).
//
// Started by tests/integration/e2e.rs, which owns the processes: this script asks it for what it
// cannot do from the browser by printing `@@ <command>` and reading one answer line on stdin:
//   @@ code                      → a fresh registration code for the doctor
//   @@ card jpki|hpki|none       → that simulated card in the reader (or none), once PC/SC sees it
//   @@ agent ok|off|wrong-origin → the card agent allowing this gateway, stopped, or allowing another
// Environment: BASE_URL, CLIENT_CERT, CLIENT_KEY, LOGIN_ID, PASSWORD, PIN; CHROMIUM, ARTIFACTS.
import { createInterface } from 'node:readline';
import { check, env, run, shots, shotHere, state } from './lib.mjs';

const base = env('BASE_URL');
const pin = env('PIN');
const rl = createInterface({ input: process.stdin });
const answers = rl[Symbol.asyncIterator]();

async function ask(command) {
  console.log(`@@ ${command}`);
  const { value, done } = await answers.next();
  if (done) throw new Error(`no answer to ${command}`);
  if (value.startsWith('error')) throw new Error(`${command}: ${value}`);
  return value.trim();
}

await run(async ({ ctx, page }) => {
  const status = async () => {
    await page.waitForFunction(() => document.getElementById('fido-status').textContent.length > 0);
    return page.textContent('#fido-status');
  };
  // Presses a card button with the PIN typed first, and returns the status line it leaves.
  const cardFails = async (button, typed) => {
    await page.fill('#card-pin', typed);
    await page.evaluate(() => { document.getElementById('fido-status').textContent = ''; });
    await page.click(button);
    return status();
  };

  await ask('agent ok');
  await ask('card jpki');

  state.step = 'login';
  await page.goto(`${base}/login`);
  await page.fill('#login_id', env('LOGIN_ID'));
  await page.fill('#password', env('PASSWORD'));
  await Promise.all([page.waitForURL('**/manage'), page.click('form[action="/login"] button[type=submit]')]);
  check((await page.textContent('#manage-first')).includes('医療機関の管理者'), 'nothing linked: the management page explains what to do');

  state.step = 'link My Number card with a code';
  await page.fill('#enroll-code', await ask('code'));
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/manage\?done=linked_jpki/), page.click('#link-code-jpki')]);
  const linked = await page.textContent('p.notice');
  check(linked.includes('マイナンバーカードを登録しました') && !linked.includes('FIDO'), `card link notice: ${linked}`);
  check((await page.textContent('#linked')).includes('マイナンバーカード 1'), 'the card is listed');
  await shots(page, 'card-manage-linked');

  state.step = 'identity-check page';
  await Promise.all([page.waitForURL('**/methods?lang=ja'), page.click('#verify-link')]);
  check((await page.textContent('#card-reminder')).includes('カードリーダーに置き'), 'reminder to put the card on the reader');
  await page.focus('#card-pin');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement.id === 'card-hpki'), 'Tab goes from the PIN to the first card button');
  await shots(page, 'card-methods');

  state.step = 'wrong PIN';
  const wrong = await cardFails('#card-jpki', pin === '9999' ? '9998' : '9999');
  check(wrong.includes('暗証番号が違います') && /残り回数： ?\d/.test(wrong), `wrong PIN with tries left: ${wrong}`);
  await shotHere(page, 'card-wrong-pin-ja');

  state.step = 'log in with the My Number card';
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/methods\?done=authenticated_jpki/), page.click('#card-jpki')]);
  const done = await page.textContent('p.notice');
  check(done.includes('マイナンバーカードで本人確認しました') && !done.includes('FIDO'), `card login notice: ${done}`);
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'signing session shown');
  await page.setViewportSize({ width: 390, height: 900 });
  const lines = await page.evaluate(() => document.querySelector('#signing-expires .nowrap').getClientRects().length);
  check(lines === 1, 'the expiry does not wrap at 390 px');
  await page.setViewportSize({ width: 1280, height: 900 });
  await shots(page, 'card-methods-session');

  state.step = 'no card';
  await ask('card none');
  const noCard = await cardFails('#card-jpki', pin);
  check(noCard.includes('カードがありません'), `no card: ${noCard}`);
  await shotHere(page, 'card-no-card-ja');

  state.step = 'agent not running';
  await ask('card jpki');
  await ask('agent off');
  const down = await cardFails('#card-jpki', pin);
  check(down.includes('カードエージェントに接続できません'), `agent not running: ${down}`);
  await shotHere(page, 'card-agent-down-ja');

  state.step = 'agent refuses this origin';
  await ask('agent wrong-origin');
  const origin = await cardFails('#card-jpki', pin);
  check(origin.includes(`--allow-origin ${base}`) && origin.includes('起動しています'), `origin refused, and what to add: ${origin}`);
  await shotHere(page, 'card-wrong-origin-ja');
  await page.goto(`${base}/methods?lang=en`);
  const originEn = await cardFails('#card-jpki', pin);
  check(originEn.includes(`Add “--allow-origin ${base}”`), `the same in English: ${originEn}`);
  await shotHere(page, 'card-wrong-origin-en');
  await page.goto(`${base}/methods?lang=ja`);

  state.step = 'link FIDO with a second code';
  await ask('agent ok');
  await ask('card hpki');
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'usb', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });
  await Promise.all([page.waitForURL('**/manage?lang=ja'), page.click('#manage-link')]);
  await page.fill('#enroll-code', await ask('code'));
  await Promise.all([page.waitForURL(/\/manage\?done=linked_fido/), page.click('#link-code')]);
  check((await page.textContent('p.notice')).includes('FIDO認証器を登録しました'), 'FIDO linked (the card login was the recent proof)');

  state.step = 'link HPKI card by confirming with FIDO';
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/manage\?done=linked_hpki/), page.click('#link-fido-hpki')]);
  check((await page.textContent('p.notice')).includes('HPKIカードを登録しました'), 'HPKI card linked after the FIDO confirmation');
  check((await page.textContent('#linked')).includes('HPKIカード 1'), 'the HPKI card is listed');
  await shots(page, 'card-manage-three');

  state.step = 'log in with the HPKI card';
  await page.goto(`${base}/methods`);
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/methods\?done=authenticated_hpki/), page.click('#card-hpki')]);
  const hpki = await page.textContent('p.notice');
  check(hpki.includes('HPKIカードで本人確認しました') && !hpki.includes('FIDO'), `HPKI login notice: ${hpki}`);
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'signing session shown');

  state.step = 'English';
  await page.goto(`${base}/methods?lang=en`);
  check((await page.textContent('#card-hpki')).trim() === 'HPKI card', 'English button');
  await page.goto(`${base}/manage`);
  const list = await page.textContent('#linked');
  check(list.includes('My Number card 1') && list.includes('HPKI card 1') && !/カード/.test(list), `card names in English: ${list}`);
  await page.goto(`${base}/methods?lang=ja`);

  state.step = 'end session';
  await Promise.all([page.waitForURL(/done=ended/), page.click('#end-signing')]);
  check((await page.textContent('p.notice')).includes('署名セッションを終了しました'), 'ended');
});
// Stop reading stdin, so node exits.
rl.close();
process.stdin.destroy();
