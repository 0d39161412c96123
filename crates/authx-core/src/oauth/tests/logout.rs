//! RP-initiated logout: the browser goes back only to a registered address, and only an ID
//! token of the very session, to the application asking, ends it without confirmation.

use super::super::logout::{LogoutDecision, LogoutParams};
use super::*;

const BYE: &str = "https://app.example/bye";

impl Rig {
    async fn logout(&self, p: &LogoutParams, signed_in: bool) -> LogoutDecision {
        let session = signed_in.then_some((&self.user.id, &self.session));
        self.oauth.decide_logout(p, session, false).await.unwrap()
    }
}

#[tokio::test]
async fn logout_returns_only_to_a_registered_address() {
    let rig = Rig::new().await;
    let web = rig.web_client("web").await;
    rig.oauth
        .register_client(
            Client {
                id: "bye".into(),
                post_logout_redirect_uris: vec![BYE.into()],
                ..web
            },
            false,
        )
        .await
        .unwrap();
    let nowhere = LogoutParams::default();
    assert_eq!(
        rig.logout(&nowhere, false).await,
        LogoutDecision::Leave { target: None }
    );
    let back = LogoutParams {
        post_logout_redirect_uri: Some(BYE.into()),
        client_id: Some("bye".into()),
        state: Some("a b".into()),
        ..LogoutParams::default()
    };
    let target = Some(format!("{BYE}?state=a+b"));
    assert_eq!(
        rig.logout(&back, false).await,
        LogoutDecision::Leave {
            target: target.clone()
        }
    );
    // Signed in without proof: the user confirms; confirmed, the session ends.
    assert_eq!(
        rig.logout(&back, true).await,
        LogoutDecision::Confirm {
            target: target.clone()
        }
    );
    let session = Some((&rig.user.id, &rig.session));
    assert_eq!(
        rig.oauth.decide_logout(&back, session, true).await.unwrap(),
        LogoutDecision::EndSession { target }
    );
    // Not registered for that client, or no client named: refused.
    for client_id in [Some("web"), None] {
        let foreign = LogoutParams {
            client_id: client_id.map(str::to_owned),
            ..back.clone()
        };
        assert_eq!(rig.logout(&foreign, false).await, LogoutDecision::Refused);
    }
}

#[tokio::test]
async fn an_id_token_of_the_session_ends_it_without_confirmation() {
    let rig = Rig::new().await;
    let client = rig.web_client("web").await;
    let id_token = rig.tokens(&client).await.id_token.expect("an ID token");
    let hinted = LogoutParams {
        id_token_hint: Some(id_token.clone()),
        ..LogoutParams::default()
    };
    assert_eq!(
        rig.logout(&hinted, true).await,
        LogoutDecision::EndSession { target: None }
    );
    // For another client than the one named, or another session: the user confirms.
    let other_client = LogoutParams {
        client_id: Some("other".into()),
        ..hinted.clone()
    };
    assert_eq!(
        rig.logout(&other_client, true).await,
        LogoutDecision::Confirm { target: None }
    );
    let other = rig.sign_in("second").await;
    assert_eq!(
        rig.oauth
            .decide_logout(&hinted, Some((&rig.user.id, &other)), false)
            .await
            .unwrap(),
        LogoutDecision::Confirm { target: None }
    );
    // Not a token of this server: no proof.
    let forged = LogoutParams {
        id_token_hint: Some("e30.e30.c2ln".into()),
        ..LogoutParams::default()
    };
    assert_eq!(
        rig.logout(&forged, true).await,
        LogoutDecision::Confirm { target: None }
    );
}
