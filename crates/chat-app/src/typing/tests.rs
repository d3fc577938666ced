use chat_domain::{CustomerId, Principal, TenantId};

use crate::error::Resource;
use crate::ports::{ChatEvent, Route};
use crate::test_support::*;
use crate::{ChatError, MockEventPublisher};

#[tokio::test]
async fn typing_is_published_for_participants_only() {
    let tenant = TenantId::new_v4();
    let found = fresh_inbox(tenant);
    let customer = Principal::customer(tenant, found.kind.customer_id().unwrap());
    let mut events = MockEventPublisher::new();
    let expected = found.clone();
    events
        .expect_publish()
        .withf(move |e| {
            *e == ChatEvent::Typing {
                route: Route::of(&expected),
                sender: customer.as_sender(),
                is_typing: true,
            }
        })
        .times(1)
        .return_const(());
    let service = chat_finding(
        found.clone(),
        events,
        crate::ports::MockReadStateRepository::new(),
    );
    service.typing(&customer, found.id, true).await.unwrap();

    let stranger = Principal::customer(tenant, CustomerId::new_v4());
    let err = service.typing(&stranger, found.id, true).await.unwrap_err();
    assert!(matches!(err, ChatError::NotFound(Resource::Conversation)));
    let foreign = staff_in(TenantId::new_v4());
    assert!(matches!(
        service.typing(&foreign, found.id, false).await,
        Err(ChatError::NotFound(Resource::Conversation))
    ));
}
