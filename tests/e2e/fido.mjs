// Browser test of FIDO login through the real pages (docs/design.md §7, issues 3 and 24): Debian's headless
// Chromium driven by playwright-core, the clinic client certificate presented by Playwright, and
// Chromium's CDP virtual WebAuthn authenticator (its real WebAuthn stack: RP ID checks,
// browser-built clientData, a CTAP2 authenticator model).
//
// Flow: log in → the management page (nothing linked yet) → a wrong code is refused with the
// message → link with the code → log out → log in → the identity-check page → FIDO → 認証済み with
// the expiry → end the signing session. Screenshots of each page (ja/en, desktop/390 px).
//
// Started by tests/integration/e2e.rs, which runs a gateway with a seeded doctor and code and
// passes: BASE_URL (https://localhost:PORT), CLIENT_CERT, CLIENT_KEY (PEM paths), LOGIN_ID,
// PASSWORD, ENROLL_CODE; optional CHROMIUM (default /usr/bin/chromium), ARTIFACTS (screenshots).
import { check, env, run, shots, state } from './lib.mjs';

const base = env('BASE_URL');

await run(async ({ ctx, page }) => {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('WebAuthn.enable');
  const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
    options: {
      protocol: 'ctap2', transport: 'usb', hasResidentKey: true,
      hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true,
    },
  });

  const login = async (lands) => {
    state.step = 'login';
    await page.goto(`${base}/login`);
    await page.fill('#login_id', env('LOGIN_ID'));
    await page.fill('#password', env('PASSWORD'));
    await Promise.all([page.waitForURL(`**/${lands}`), page.click('form[action="/login"] button[type=submit]')]);
  };

  state.step = 'login page';
  await page.goto(`${base}/login`);
  await shots(page, 'login');

  await login('manage');
  check((await page.textContent('#linked-none')).includes('まだ登録されていません'), 'no linked authenticators yet');
  check((await page.textContent('#manage-first')).includes('医療機関の管理者'), 'the first visit explains where the code comes from');
  await shots(page, 'manage-first');

  state.step = 'wrong code';
  await page.fill('#enroll-code', 'AAAA-AAAA-AAAA-AAAA-AAAA-AAAA');
  await page.click('#link-code');
  await page.waitForFunction(() => document.getElementById('fido-status').textContent.length > 0);
  const refusal = await page.textContent('#fido-status');
  check(refusal.includes('登録コードが正しくありません'), `wrong code refused: ${refusal}`);

  state.step = 'link with code';
  await page.fill('#enroll-code', env('ENROLL_CODE').toLowerCase());
  await page.fill('#credential-name', 'E2Eキー');
  await Promise.all([page.waitForURL(/\/manage\?done=linked_fido/), page.click('#link-code')]);
  check((await page.textContent('p.notice')).includes('FIDO認証器を登録しました'), 'linked notice shown');
  check((await page.textContent('#linked')).includes('E2Eキー'), 'the new authenticator is listed');
  const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(credentials.length === 1 && credentials[0].rpId === 'localhost', 'virtual authenticator holds one credential for RP localhost');
  await shots(page, 'manage-linked');

  state.step = 'logout';
  await Promise.all([page.waitForURL(/signed_out/), page.click('#sign-out')]);
  check((await page.textContent('p.notice')).includes('ログアウトしました'), 'signed out');

  await login('methods');
  state.step = 'authenticate';
  check(!(await page.isDisabled('#fido-auth')), 'FIDO button is enabled');
  check(!(await page.content()).includes('認証済み'), 'not authenticated yet');
  await shots(page, 'methods');
  await Promise.all([page.waitForURL(/\/methods\?done=authenticated_fido/), page.click('#fido-auth')]);
  check((await page.textContent('p.notice')).includes('FIDO認証器で本人確認しました'), 'FIDO notice shown');
  check((await page.textContent('#signing-state')).trim() === '認証済み', 'page shows 認証済み');
  const expires = await page.textContent('#signing-expires');
  check(/\d{4}-\d{2}-\d{2} \d{2}:\d{2}（日本時間）/.test(expires), `expiry shown in JST: ${expires}`);
  const after = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
  check(after.credentials[0].signCount >= 1, 'the authenticator signed (counter advanced)');
  await shots(page, 'methods-session');

  state.step = 'end session';
  await Promise.all([page.waitForURL(/done=ended/), page.click('#end-signing')]);
  check((await page.textContent('p.notice')).includes('署名セッションを終了しました'), 'ended notice shown');
  check(!(await page.content()).includes('認証済み'), 'no longer authenticated');

  state.step = 'error page';
  const res = await page.goto(`${base}/no-such-page`);
  check(res.status() === 404 && (await page.isVisible('#back')), '404 page in the layout with a way back');
  await shots(page, 'not-found');
  await Promise.all([page.waitForURL('**/methods'), page.click('#back')]);
  check(true, 'the way back leads to the identity-check page');
});
