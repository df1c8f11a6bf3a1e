//! The registration service's gRPC adapter: each RPC parses its request (`wire`),
//! calls the application (`app`) and maps the answer back (`wire`); errors become
//! statuses in one place (`error`).

use dvk_proto::registration::v1::{self as pr, registration_service_server::RegistrationService};
use dvk_runtime::Access;
use tonic::{Request, Response, Status, Streaming};

pub use crate::app::Registration;
use crate::wire;

type Answer<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl RegistrationService for Registration {
    async fn import_units(
        &self,
        request: Request<Streaming<pr::ImportUnitsRequest>>,
    ) -> Answer<pr::ImportUnitsResponse> {
        let access = Access::of(&request)?;
        let import = wire::import_units(request.into_inner()).await?;
        let outcome = self.import(&access, import).await?;
        Ok(Response::new(wire::imported(outcome)))
    }

    async fn reorganize_units(
        &self,
        request: Request<pr::ReorganizeUnitsRequest>,
    ) -> Answer<pr::ReorganizeUnitsResponse> {
        let access = Access::of(&request)?;
        let reorganize = wire::reorganize_units(request.into_inner())?;
        let outcome = self.reorganize(&access, reorganize).await?;
        Ok(Response::new(wire::reorganized(outcome)))
    }

    async fn get_unit(&self, request: Request<pr::GetUnitRequest>) -> Answer<pr::Unit> {
        let (tree, code) = wire::get_unit(request.get_ref())?;
        let unit = self.unit(tree, code).await?;
        Ok(Response::new(wire::unit(unit)))
    }

    async fn list_units(&self, request: Request<pr::ListUnitsRequest>) -> Answer<pr::ListUnitsResponse> {
        let query = wire::list_units(request.get_ref())?;
        let page = self.units(query).await?;
        Ok(Response::new(wire::units(page)))
    }

    async fn register_model(&self, request: Request<pr::RegisterModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let registration = wire::register_model(request.into_inner())?;
        let written = self.register(&access, registration).await?;
        Ok(Response::new(wire::written(written)))
    }

    async fn amend_model(&self, request: Request<pr::AmendModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::amend_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn start_model(&self, request: Request<pr::StartModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::start_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn recognize_model(&self, request: Request<pr::RecognizeModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::recognize_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn commend_model(&self, request: Request<pr::CommendModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::commend_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn replicate_model(&self, request: Request<pr::ReplicateModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::replicate_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn retire_model(&self, request: Request<pr::RetireModelRequest>) -> Answer<pr::WriteModelResponse> {
        let access = Access::of(&request)?;
        let change = wire::retire_model(request.into_inner())?;
        Ok(Response::new(wire::written(self.change_model(&access, change).await?)))
    }

    async fn get_model(&self, request: Request<pr::GetModelRequest>) -> Answer<pr::Model> {
        let access = Access::of(&request)?;
        let id = wire::model_id(&request.get_ref().model_id)?;
        let model = self.model(&access, id).await?;
        Ok(Response::new(wire::model(model)))
    }

    async fn list_models(&self, request: Request<pr::ListModelsRequest>) -> Answer<pr::ListModelsResponse> {
        let access = Access::of(&request)?;
        let query = wire::list_models(request.into_inner())?;
        let page = self.models(&access, query).await?;
        Ok(Response::new(wire::models(page)))
    }

    async fn get_model_history(
        &self,
        request: Request<pr::GetModelHistoryRequest>,
    ) -> Answer<pr::GetModelHistoryResponse> {
        let access = Access::of(&request)?;
        let (id, size, page_token) = wire::model_history(request.into_inner())?;
        let history = self.model_history(&access, id, size, &page_token).await?;
        Ok(Response::new(wire::history(history)))
    }
}
