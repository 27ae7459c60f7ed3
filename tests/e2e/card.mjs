// Browser test of card login through the real pages (issue 24): Debian's headless Chromium with the
// clinic client certificate, the real card agent (`card-agent`) and simulated cards (`card-sim`) in
// a private pcscd with the vpcd virtual reader.
//
// Flow: log in → the management page → link a My Number card with a registration code → the
// identity-check page (PIN before the card buttons) → wrong PIN (tries left) → log in with the card
// (the card's own notice, the session) → no card → agent not running → agent refusing this origin
// (the page says which origin to add) → link a FIDO authenticator (second code, after the card
// proof) → link an HPKI card by confirming with FIDO → the HPKI card's wrong PIN (tries left) → log
// in with it → no card → agent not running → English pages (card names translated) → end the
// session → remove the FIDO authenticator and the HPKI card, then add them back by confirming with
// the My Number card (its PIN; for the HPKI card, the card is swapped on the reader and its own PIN
// typed) → rename the My Number card → the password page and the error pages (403 origin, 403
// device, 404 is in fido.mjs, 503 during a database outage). Screenshots of each page (ja/en,
// desktop/390 px).
//
// Started by tests/integration/e2e.rs, which owns the processes: this script asks it for what it
// cannot do from the browser by printing `@@ <command>` and reading one answer line on stdin:
//   @@ code                      → a fresh registration code for the doctor
//   @@ card jpki|hpki|none       → that simulated card in the reader (or none), once PC/SC sees it
//   @@ agent ok|off|wrong-origin → the card agent allowing this gateway, stopped, or allowing another
//   @@ outage                    → the gateway's database pools closed (the last step)
// Environment: BASE_URL, CLIENT_CERT, CLIENT_KEY, LOGIN_ID, PASSWORD, PIN, DEVICE_CERT and
// DEVICE_KEY (a valid but unregistered device certificate); CHROMIUM, ARTIFACTS.
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

await run(async ({ browser, ctx, page }) => {
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
  check((await page.inputValue('#confirm-with')) === 'fido', 'a linked FIDO authenticator is the first to confirm with');
  await Promise.all([page.waitForURL(/\/manage\?done=linked_hpki/), page.click('#link-existing-hpki')]);
  check((await page.textContent('p.notice')).includes('HPKIカードを登録しました'), 'HPKI card linked after the FIDO confirmation');
  check((await page.textContent('#linked')).includes('HPKIカード 1'), 'the HPKI card is listed');
  await shots(page, 'card-manage-three');

  state.step = 'HPKI card: wrong PIN';
  await page.goto(`${base}/methods`);
  const hpkiWrong = await cardFails('#card-hpki', pin === '9999' ? '9998' : '9999');
  check(hpkiWrong.includes('暗証番号が違います') && /残り回数： ?\d/.test(hpkiWrong), `HPKI wrong PIN with tries left: ${hpkiWrong}`);
  await shotHere(page, 'card-hpki-wrong-pin-ja');

  state.step = 'log in with the HPKI card';
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/methods\?done=authenticated_hpki/), page.click('#card-hpki')]);
  const hpki = await page.textContent('p.notice');
  check(hpki.includes('HPKIカードで本人確認しました') && !hpki.includes('FIDO'), `HPKI login notice: ${hpki}`);
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'signing session shown');

  state.step = 'HPKI card: no card';
  await ask('card none');
  const hpkiNoCard = await cardFails('#card-hpki', pin);
  check(hpkiNoCard.includes('カードがありません'), `HPKI, no card: ${hpkiNoCard}`);
  await shotHere(page, 'card-hpki-no-card-ja');

  state.step = 'HPKI card: agent not running';
  await ask('card hpki');
  await ask('agent off');
  const hpkiDown = await cardFails('#card-hpki', pin);
  check(hpkiDown.includes('カードエージェントに接続できません'), `HPKI, agent not running: ${hpkiDown}`);
  await page.goto(`${base}/methods?lang=en`);
  const hpkiDownEn = await cardFails('#card-hpki', pin);
  check(hpkiDownEn.includes('card agent') && !/[ぁ-んァ-ン]/.test(hpkiDownEn), `the same in English: ${hpkiDownEn}`);
  await shotHere(page, 'card-hpki-agent-down-en');
  await page.goto(`${base}/methods?lang=ja`);
  await ask('agent ok');

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

  state.step = 'remove the FIDO authenticator and the HPKI card';
  await page.goto(`${base}/manage?lang=ja`);
  await Promise.all([page.waitForURL(/done=removed_fido/), page.click('li[data-kind=fido] button.danger')]);
  await Promise.all([page.waitForURL(/done=removed_hpki/), page.click('li[data-kind=hpki] button.danger')]);
  check((await page.textContent('p.notice')).includes('HPKIカードの登録を削除しました'), 'HPKI card removed');
  const only = await page.$$eval('#confirm-with option', (os) => os.map((o) => o.value));
  check(only.length === 1 && only[0] === 'jpki', `only the My Number card is left to confirm with: ${only}`);

  state.step = 'add a FIDO authenticator by confirming with the My Number card';
  await ask('card jpki');
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/manage\?done=linked_fido/), page.click('#link-existing')]);
  check((await page.textContent('p.notice')).includes('FIDO認証器を登録しました'), 'FIDO linked after the card confirmation');

  state.step = 'add an HPKI card by confirming with the My Number card';
  await page.selectOption('#confirm-with', 'jpki');
  const wrongConfirm = await cardFails('#link-existing-hpki', pin === '9999' ? '9998' : '9999');
  check(wrongConfirm.includes('暗証番号が違います'), `a wrong PIN of the confirming card: ${wrongConfirm}`);
  check(await page.isHidden('#confirm-continue'), 'no next step after a refused confirmation');
  await page.selectOption('#confirm-with', 'jpki');
  await page.fill('#card-pin', pin);
  await page.click('#link-existing-hpki');
  await page.waitForSelector('#confirm-continue', { state: 'visible' });
  check((await page.textContent('#confirm-swap')).includes('追加するカードをカードリーダーに置き替え'), 'the page asks for the card to add');
  await shotHere(page, 'card-confirm-swap-ja');
  await ask('card hpki');
  await page.fill('#card-pin', pin);
  await Promise.all([page.waitForURL(/\/manage\?done=linked_hpki/), page.click('#confirm-continue')]);
  check((await page.textContent('p.notice')).includes('HPKIカードを登録しました'), 'HPKI card linked after the card confirmation');
  await shots(page, 'card-manage-confirmed');

  state.step = 'rename the My Number card';
  await page.fill('li[data-kind=jpki] input[name=name]', '外来用');
  await Promise.all([page.waitForURL(/done=renamed_jpki/), page.click('li[data-kind=jpki] form[action*="/rename"] button')]);
  check((await page.textContent('p.notice')).includes('マイナンバーカードの名前を変更しました'), 'card renamed notice');
  check((await page.textContent('li[data-kind=jpki] .name')).trim() === '外来用', 'the new name is listed');
  await page.goto(`${base}/manage?lang=en`);
  const renamedEn = await page.textContent('li[data-kind=jpki]');
  check(renamedEn.includes('外来用') && renamedEn.includes('My Number card') && !/カード/.test(renamedEn), `in English: ${renamedEn}`);
  await shots(page, 'card-manage-renamed');

  state.step = 'password page';
  await page.goto(`${base}/manage?lang=ja`);
  await Promise.all([page.waitForURL('**/password?lang=ja'), page.click('#change-password-link')]);
  check(await page.isVisible('#change-password'), 'the password change page');
  await shots(page, 'password');

  state.step = '403: a form posted from another origin';
  for (const lang of ['ja', 'en']) {
    // A document of another origin (a data: URL's is opaque: the browser sends `Origin: null`).
    const form = `<form method="post" action="${base}/logout?lang=${lang}"><button id="go">go</button></form>`;
    await page.goto(`data:text/html,${encodeURIComponent(form)}`);
    const [res] = await Promise.all([page.waitForNavigation(), page.click('#go')]);
    check(res.status() === 403 && (await page.isVisible('#back')), `origin refused (${lang}), in the layout with a way back`);
    await shotHere(page, `forbidden-origin-${lang}`);
  }
  await page.goto(`${base}/methods`);
  check((await page.textContent('#signing-none')).length > 0, 'still signed in: the refused form did nothing');

  state.step = '403: an unregistered device';
  const device = await browser.newContext({
    ignoreHTTPSErrors: true,
    locale: 'ja-JP',
    viewport: { width: 1280, height: 900 },
    clientCertificates: [{ origin: base, certPath: env('DEVICE_CERT'), keyPath: env('DEVICE_KEY') }],
  });
  const devicePage = await device.newPage();
  const refused = await devicePage.goto(`${base}/login?lang=ja`);
  check(refused.status() === 403 && (await devicePage.isVisible('#back')), 'unregistered device refused, with a way back');
  check((await devicePage.textContent('main')).includes('登録'), 'the device page explains registration');
  const styled = await devicePage.evaluate(() => getComputedStyle(document.body).backgroundColor);
  check(styled === 'rgb(245, 247, 250)', `the device page has the product's stylesheet: ${styled}`);
  await shots(devicePage, 'forbidden-device');
  await device.close();

  state.step = '503: the database is down';
  await ask('outage');
  const outage = await page.goto(`${base}/methods?lang=ja`);
  check(outage.status() === 503 && (await page.isVisible('#back')), 'outage page with a way back');
  const css = await page.request.get(`${base}/assets/app.css`);
  check(css.status() === 200, 'the stylesheet is served during the outage');
  await shots(page, 'unavailable');
});
// Stop reading stdin, so node exits.
rl.close();
process.stdin.destroy();
