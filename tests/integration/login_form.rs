//! The login form as a browser and a password manager see it (ASVS 5.0 V6.2.6, V6.2.7).

use crate::helpers::*;

async fn login_form_masks_the_password_and_lets_password_managers_fill_it(db: Db) {
    let app = TestApp::spawn(db).await;
    let page = app.clinic_client().get(app.url("/login")).send().await.unwrap().text().await.unwrap();
    let password_input = page
        .split('<')
        .find(|tag| tag.starts_with("input") && tag.contains(r#"name="password""#))
        .unwrap_or_else(|| panic!("no password input in {page}"));
    assert!(password_input.contains(r#"type="password""#), "masked: {password_input}");
    assert!(password_input.contains(r#"autocomplete="current-password""#), "managers may fill it: {password_input}");
    let login_input = page.split('<').find(|tag| tag.starts_with("input") && tag.contains(r#"name="login_id""#)).unwrap();
    assert!(login_input.contains(r#"autocomplete="username""#), "{login_input}");
    for blocker in ["onpaste", "oncopy", "ondrop", r#"autocomplete="off""#] {
        assert!(!password_input.contains(blocker) && !login_input.contains(blocker), "{blocker} in the form");
    }
    app.stop().await;
}

db_tests!(login_form_masks_the_password_and_lets_password_managers_fill_it);
