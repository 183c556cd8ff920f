"""The business-as-usual (BAU) targeting policy and the day-by-day simulation of exposures.

Helper of :mod:`hcp_lib.world.synth`. The BAU policy is what a brand team does without a
recommender: segment-level rules, no knowledge of individual interests.

- Each day, a contactable HCP is touched with probability ``rate_h * weekday_share``; the
  weekly rate grows with the prescribing decile (mean ``touches_per_hcp_week``).
- The channel is drawn from the BAU channel mix, limited to the HCP's segment (rep visits
  and in-person meetings target deciles 5-10) and the weekday; a channel whose expected
  weekly demand exceeds its capacity is thinned by ``capacity / demand``.
- The content is drawn among items with a campaign on that channel active at the start of
  the week and approved for the HCP's specialty, weighted by the area's relevance to the
  specialty and the campaign's novelty.

- Series nurture rule: when an HCP engages with a part of a series, the next part is
  scheduled by email a week later and sent with probability ``FOLLOWUP_SEND_PROB`` (if its
  email campaign is active then); on that day the HCP gets no other BAU touch.

The logged ``propensity`` is the probability of the logged exposure under these rules,
exact by construction.
The loop runs over days (state must evolve in time); the work inside is vectorised over
HCPs. Each HCP is touched at most once a day, so updating the state after each day
equals updating it after each exposure.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.special import expit

from ..progress import each
from . import behaviour
from .behaviour import HistoryContext, TruthModel
from .entities import CHANNEL_TABLE, CHANNELS, SPECIALTY_KEYS

BAU_CHANNEL_MIX = np.array([0.62, 0.12, 0.14, 0.04, 0.08])
WEEKDAY_SHARE = np.array([0.19, 0.21, 0.21, 0.19, 0.14, 0.03, 0.03])  # Monday .. Sunday
CHANNEL_WEEKDAY = np.array(
    [
        [1.0, 1.0, 1.0, 1.0, 1.0, 0.3, 0.3],  # email
        [1.0, 1.0, 1.0, 1.0, 0.8, 0.2, 0.2],  # webinar
        [1.0, 1.0, 1.0, 1.0, 0.9, 0.0, 0.0],  # rep visit: business days only
        [0.8, 1.0, 1.0, 1.0, 0.6, 0.0, 0.0],  # in-person meeting
        [0.6, 0.8, 1.0, 1.0, 1.2, 3.0, 2.0],  # conferences run over weekends
    ]
)
_HOURS = np.arange(24)


def _hour_pmf(peaks: list[tuple[float, float, float]]) -> np.ndarray:
    weights = sum(w * np.exp(-0.5 * ((_HOURS - mu) / sd) ** 2) for mu, sd, w in peaks)
    return weights / weights.sum()


# Hour of the touch by channel: e-mail early morning, noon and late afternoon; webinars at
# lunch and evening; rep visits in office hours; meetings at lunch or dinner; events all day.
CHANNEL_HOUR_PMF = np.vstack(
    [
        _hour_pmf([(7.5, 1.0, 1.0), (12, 1.0, 0.5), (17, 1.5, 0.4)]),
        _hour_pmf([(12.5, 0.7, 1.0), (19, 1.0, 0.8)]),
        _hour_pmf([(10, 1.5, 1.0), (14.5, 1.5, 0.9)]),
        _hour_pmf([(12, 0.7, 0.5), (19, 1.0, 1.0)]),
        _hour_pmf([(10, 2.0, 1.0), (15, 2.0, 0.8)]),
    ]
)
BAU_AREA_WEIGHT = 2.0  # log-weight per unit of area-specialty relevance
BAU_NOVELTY_WEIGHT = 1.0  # log-weight of a campaign in its first weeks
BAU_NOVELTY_WEEKS = 4.0
FOLLOWUP_DELAY_DAYS = 7
FOLLOWUP_SEND_PROB = 0.6
PUSH_SEGMENT_MIN_DECILE = 5  # rep visits and meetings go to deciles 5-10 (CHANNEL_TABLE target_segment)

# Response funnel per channel (CHANNELS order), given the engagement draw (data card).
OPEN_IF_NOT_ENGAGED = np.array([0.22, 0.25, 0.55, 0.15, 0.30])
CLICK_IF_ENGAGED = np.array([1.00, 0.60, 0.50, 0.50, 0.40])
CLICK_IF_NOT_ENGAGED = np.array([0.00, 0.02, 0.02, 0.02, 0.02])
DWELL_MEDIAN_ENGAGED = np.array([75.0, 1800.0, 420.0, 3600.0, 600.0])  # seconds
DWELL_MEDIAN_GLANCE = np.array([6.0, 120.0, 90.0, 600.0, 60.0])  # opened, not engaged
CONVERT_IF_ENGAGED = np.array([0.10, 0.15, 0.25, 0.20, 0.12])


def touch_rates(deciles: np.ndarray, touches_per_hcp_week: float) -> np.ndarray:
    """Weekly BAU touch rate per HCP: proportional to 0.4 + 0.12 * decile, mean as given."""
    raw = 0.4 + 0.12 * deciles
    return touches_per_hcp_week * raw / raw.mean()


def simulate_exposures(
    rng: np.random.Generator,
    model: TruthModel,
    specialty_idx: np.ndarray,
    deciles: np.ndarray,
    opt_out_minute: np.ndarray,
    campaign_window: np.ndarray,
    approved: np.ndarray,
    area_relevance: np.ndarray,
    horizon_days: int,
    touches_per_hcp_week: float,
    start_weekday: int,
    progress: Callable | None = None,
) -> pd.DataFrame:
    """Run the BAU policy and the engagement model over the horizon, a week at a time
    (``progress``, e.g. ``tqdm``, counts the weeks).

    ``campaign_window`` [content, channel, 2] holds campaign start/end minutes (NaN where
    the item has no campaign on the channel); ``approved`` and ``area_relevance`` are
    [specialty, content]. Returns one row per exposure with index columns (hcp_idx,
    content_idx, channel_idx), ``minute``, ``propensity``, ``true_engagement_prob``, ``engaged``.
    """
    n_hcps, n_content = len(specialty_idx), len(model.theta)
    n_channels, n_specialties = len(CHANNELS), len(SPECIALTY_KEYS)
    window = int(round(model.fatigue_window_minutes / 1440))
    rate = touch_rates(deciles, touches_per_hcp_week)
    in_push_segment = deciles >= PUSH_SEGMENT_MIN_DECILE
    group = specialty_idx * 2 + in_push_segment  # policy segment of each HCP
    segment_ok = np.ones((2 * n_specialties, n_channels), dtype=bool)
    segment_ok[0::2, 2:4] = False  # rep visit, meeting: deciles 5-10 only
    capacity = CHANNEL_TABLE["capacity_per_1000_hcps_week"].to_numpy() * n_hcps / 1000

    state_touch_times = np.full((n_hcps, window), -np.inf)
    state_touch_pos = np.zeros(n_hcps, dtype=np.int64)
    state_last_channel = np.full((n_hcps, n_channels), -np.inf)
    state_seen = np.zeros((n_hcps, n_content), dtype=np.int8)
    state_memory = np.zeros((n_hcps, model.theta.shape[1]))
    state_memory_minute = np.zeros(n_hcps)
    followup_day = np.full(n_hcps, -1)
    followup_content = np.zeros(n_hcps, dtype=np.int64)
    next_part = np.full(n_content, -1)
    next_part[model.prev_part[model.prev_part >= 0]] = np.flatnonzero(model.prev_part >= 0)
    email = CHANNELS.index("email")
    batches = []

    for week in each(progress, range(int(np.ceil(horizon_days / 7))), "simulated weeks"):
        week_minute = week * 7 * 1440
        content_prob, available = _content_policy(campaign_window, approved, area_relevance, week_minute)
        group_available = available[np.arange(2 * n_specialties) // 2] & segment_ok
        # channel probabilities [group, weekday, channel]
        weights = BAU_CHANNEL_MIX[None, None, :] * CHANNEL_WEEKDAY.T[None, :, :] * group_available[:, None, :]
        totals = weights.sum(axis=2, keepdims=True)
        channel_prob = np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0)
        contactable = opt_out_minute > week_minute
        group_rate = np.bincount(group[contactable], weights=rate[contactable], minlength=2 * n_specialties)
        demand = np.einsum("g,d,gdk->k", group_rate, WEEKDAY_SHARE, channel_prob)
        accept = np.minimum(1.0, np.divide(capacity, demand, out=np.ones_like(demand), where=demand > 0))
        content_cdf = np.cumsum(content_prob.reshape(-1, n_content), axis=1)
        content_cdf += np.arange(len(content_cdf))[:, None]  # rows stacked so one searchsorted serves all

        for day in range(week * 7, min(week * 7 + 7, horizon_days)):
            weekday = (start_weekday + day) % 7
            day_minute = day * 1440
            touch_prob = np.minimum(rate * WEEKDAY_SHARE[weekday], 1.0) * (totals[group, weekday, 0] > 0)
            touch_prob *= opt_out_minute >= day_minute + 1440
            due = np.flatnonzero(followup_day == day)
            due_content = followup_content[due]
            with np.errstate(invalid="ignore"):
                sendable = (
                    (campaign_window[due_content, email, 0] <= day_minute)
                    & (campaign_window[due_content, email, 1] > day_minute + 1440)
                    & (opt_out_minute[due] >= day_minute + 1440)
                )
            due, due_content = due[sendable], due_content[sendable]
            sent = rng.random(len(due)) < FOLLOWUP_SEND_PROB
            regular_prob = touch_prob.copy()
            regular_prob[due] *= 1 - FOLLOWUP_SEND_PROB  # the regular draw only if no follow-up is sent
            draw_prob = touch_prob.copy()
            draw_prob[due[sent]] = 0.0
            draw_prob[due[~sent]] = touch_prob[due[~sent]]
            hcp = np.flatnonzero(rng.random(n_hcps) < draw_prob)
            p_channel = channel_prob[group[hcp], weekday]
            channel = (np.cumsum(p_channel, axis=1) < rng.random(len(hcp))[:, None]).sum(axis=1)
            channel = np.minimum(channel, n_channels - 1)
            kept = rng.random(len(hcp)) < accept[channel]
            hcp, channel, p_channel = hcp[kept], channel[kept], p_channel[kept]
            row = specialty_idx[hcp] * n_channels + channel
            content = np.searchsorted(content_cdf.ravel(), row + rng.random(len(hcp)), side="right") - row * n_content
            content = np.clip(content, 0, n_content - 1)
            propensity = (
                regular_prob[hcp]
                * p_channel[np.arange(len(hcp)), channel]
                * accept[channel]
                * content_prob[specialty_idx[hcp], channel, content]
            )
            followed = due[sent]
            regular_same = (
                regular_prob[followed]
                * channel_prob[group[followed], weekday, email]
                * accept[email]
                * content_prob[specialty_idx[followed], email, due_content[sent]]
            )
            hcp = np.concatenate([hcp, followed])
            channel = np.concatenate([channel, np.full(len(followed), email)])
            content = np.concatenate([content, due_content[sent]])
            propensity = np.concatenate([propensity, FOLLOWUP_SEND_PROB + regular_same])
            followup_day[followup_day == day] = -1
            hour = (np.cumsum(CHANNEL_HOUR_PMF[channel], axis=1) < rng.random(len(hcp))[:, None]).sum(axis=1)
            minute = day_minute + np.minimum(hour, 23) * 60 + rng.integers(0, 60, len(hcp))

            context = HistoryContext(
                touches_in_window=(state_touch_times[hcp] >= minute[:, None] - model.fatigue_window_minutes).sum(
                    axis=1
                ),
                minutes_since_channel=minute - state_last_channel[hcp, channel],
                seen_code=state_seen[hcp, content],
                prev_part_engaged=(model.prev_part[content] >= 0)
                & (state_seen[hcp, np.maximum(model.prev_part[content], 0)] == 2),
                memory_dot=np.einsum("ij,ij->i", state_memory[hcp], model.theta[content])
                * behaviour.recency_decay(model, minute - state_memory_minute[hcp]),
            )
            prob = expit(behaviour.engagement_logit(model, hcp, content, channel, minute.astype(float), context))
            engaged = rng.random(len(hcp)) < prob
            batches.append((hcp, content, channel, minute, propensity, prob, engaged))

            state_touch_times[hcp, state_touch_pos[hcp]] = minute
            state_touch_pos[hcp] = (state_touch_pos[hcp] + 1) % window
            state_last_channel[hcp, channel] = minute
            state_seen[hcp, content] = np.maximum(state_seen[hcp, content], np.where(engaged, 2, 1))
            fresh = hcp[engaged]
            state_memory[fresh] = (
                state_memory[fresh]
                * behaviour.recency_decay(model, minute[engaged] - state_memory_minute[fresh])[:, None]
                + model.theta[content[engaged]]
            )
            state_memory_minute[fresh] = minute[engaged]
            has_next = engaged & (next_part[content] >= 0)
            followup_day[hcp[has_next]] = day + FOLLOWUP_DELAY_DAYS
            followup_content[hcp[has_next]] = next_part[content[has_next]]

    columns = ("hcp_idx", "content_idx", "channel_idx", "minute", "propensity", "true_engagement_prob", "engaged")
    return pd.DataFrame({name: np.concatenate([b[i] for b in batches]) for i, name in enumerate(columns)})


def _content_policy(
    campaign_window: np.ndarray, approved: np.ndarray, area_relevance: np.ndarray, week_minute: int
) -> tuple[np.ndarray, np.ndarray]:
    """BAU content probabilities [specialty, channel, content] and availability [specialty, channel]."""
    start, end = campaign_window[..., 0], campaign_window[..., 1]
    with np.errstate(invalid="ignore"):
        active = (start <= week_minute) & (end > week_minute)  # [content, channel]
    age = np.maximum(np.nan_to_num(week_minute - start, nan=0.0), 0.0)
    novelty = BAU_NOVELTY_WEIGHT * np.exp(-age / (BAU_NOVELTY_WEEKS * 7 * 1440))
    log_weight = BAU_AREA_WEIGHT * area_relevance[:, None, :] + novelty.T[None, :, :]
    weights = np.exp(log_weight) * (approved[:, None, :] & active.T[None, :, :])
    totals = weights.sum(axis=2, keepdims=True)
    return np.divide(weights, totals, out=np.zeros_like(weights), where=totals > 0), totals[..., 0] > 0


def draw_responses(rng: np.random.Generator, channel_idx: np.ndarray, engaged: np.ndarray) -> pd.DataFrame:
    """Opened, clicked, dwell seconds, converted and the engagement score, given the engagement draw.

    An engaged touch is always opened; others are opened with the channel's glance rate.
    Dwell is log-normal around the channel's median (engaged or glance), 0 if unopened.
    ``engagement_score = 0.15 opened + 0.25 clicked + 0.35 min(1, dwell / (2 median)) + 0.25 converted``.
    """
    n = len(channel_idx)
    opened = engaged | (rng.random(n) < OPEN_IF_NOT_ENGAGED[channel_idx])
    clicked = np.where(
        engaged,
        rng.random(n) < CLICK_IF_ENGAGED[channel_idx],
        opened & (rng.random(n) < CLICK_IF_NOT_ENGAGED[channel_idx]),
    )
    median = np.where(engaged, DWELL_MEDIAN_ENGAGED[channel_idx], DWELL_MEDIAN_GLANCE[channel_idx])
    dwell = np.where(opened, np.round(median * np.exp(rng.normal(0, 0.6, n)), 1), 0.0)
    converted = engaged & (rng.random(n) < CONVERT_IF_ENGAGED[channel_idx])
    score = (
        0.15 * opened
        + 0.25 * clicked
        + 0.35 * np.minimum(1.0, dwell / (2 * DWELL_MEDIAN_ENGAGED[channel_idx]))
        + 0.25 * converted
    )
    return pd.DataFrame(
        {
            "opened": opened,
            "clicked": clicked,
            "dwell_seconds": dwell,
            "converted": converted,
            "engagement_score": score,
        }
    )
