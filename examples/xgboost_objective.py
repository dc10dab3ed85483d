"""Train XGBoost with fastloss objectives.

1. Poisson regression: the fastloss objective reproduces XGBoost's ``count:poisson`` (same
   intercept, same exact-Newton hessian), with sample weights.
2. A loss XGBoost does not have: log-cosh, with its default constant hessian.

Run: ``python examples/xgboost_objective.py`` (needs ``pip install xgboost``).
"""

import numpy as np
import xgboost as xgb

import fastloss
import fastloss.xgboost as fxgb

rng = np.random.default_rng(0)
n = 5000
X = rng.normal(size=(n, 5))
log_mu = 0.4 * X[:, 0] - 0.3 * X[:, 1] ** 2 + 0.2 * X[:, 2] * X[:, 3]
y = rng.poisson(np.exp(log_mu)).astype(float)
w = rng.uniform(0.5, 2.0, size=n)
X_train, X_test, y_train, y_test = X[:4000], X[4000:], y[:4000], y[4000:]
w_train = w[:4000]

# -- 1. Poisson: fastloss against the built-in objective ---------------------------------------
loss = fastloss.Poisson()
obj = fxgb.Objective(loss)                      # native objective: xgb.train(obj=...)
dtrain = xgb.DMatrix(X_train, y_train, weight=w_train)
dtest = xgb.DMatrix(X_test, y_test)
params = {"max_depth": 4, "eta": 0.1, "seed": 0,
          # count:poisson inflates its hessian by exp(max_delta_step) (0.7) by default;
          # 0 makes it the exact Newton step that fastloss hands over.
          "max_delta_step": 0.0}

base = obj.base_score(y_train, sample_weight=w_train)   # log of the weighted mean, a margin
ours = xgb.train({**params, "base_score": base, "disable_default_eval_metric": True},
                 dtrain, 100, obj=obj, custom_metric=fxgb.Metric(loss),
                 evals=[(dtest, "test")], verbose_eval=50)
builtin = xgb.train({**params, "objective": "count:poisson",
                     "base_score": float(np.exp(base))},     # built-ins take a mean here
                    dtrain, 100)

mu_ours = obj.inverse_link(ours.predict(dtest, output_margin=True))   # exp of the margin
mu_builtin = builtin.predict(dtest)
print(f"Poisson deviance on test: fastloss {loss.loss(y_test, np.log(mu_ours)):.5f}, "
      f"count:poisson {loss.loss(y_test, np.log(mu_builtin)):.5f}")
print(f"largest relative difference of the predicted means: "
      f"{np.max(np.abs(mu_ours / mu_builtin - 1)):.1e}")

# -- 2. log-cosh regression on heavy-tailed noise ------------------------------------------------
y_heavy = 2.0 + X[:, 0] - X[:, 1] ** 2 + rng.standard_t(1.5, size=n)
lc = fastloss.LogCosh()
obj_lc = fxgb.Objective(lc)
print(f"log-cosh hessian policy: {obj_lc.hessian_policy}")
model = xgb.XGBRegressor(objective=fxgb.SklearnObjective(lc), n_estimators=100, max_depth=4,
                         learning_rate=0.1,
                         base_score=obj_lc.base_score(y_heavy[:4000]))
model.fit(X_train, y_heavy[:4000])
pred = model.predict(X_test)
constant = np.full(1000, obj_lc.intercept(y_heavy[:4000]))
print(f"log-cosh on test: model {lc.loss(y_heavy[4000:], pred):.4f}, "
      f"best constant {lc.loss(y_heavy[4000:], constant):.4f}")
