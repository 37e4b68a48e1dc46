"""Hand-written instruction seeds, at least ten per task, in the style of the paper's Figures 2 and 3.

Detection and pose instructions state the original width and height (``{width}``/``{height}``), since answers are
in original-image pixels. The image itself is not named in the text: the conversation template puts the visual
tokens before the instruction. ``tools/paraphrase_instructions.py`` enlarges these pools offline.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Optional

RESOLUTION = " The original resolution of this image has a width and a height of {width} and {height}."

SEEDS: Dict[str, List[str]] = {
    "face_detection": [
        "This is a face detection task. You should identify the faces in the image and draw a bounding box around each one.",
        "Find every human face in this picture and give the bounding box of each.",
        "Detect all faces in the image and report their bounding boxes as [x1, y1, x2, y2].",
        "Locate each face that appears in this image.",
        "Where are the faces in this picture? Give a box for every one of them.",
        "Please mark the position of every face in the image with a bounding box.",
        "How many faces can you see, and where are they? Answer with bounding boxes.",
        "Perform face detection on this image.",
        "Identify all the faces present and output the coordinates of their boxes.",
        "List the bounding boxes of all faces visible in this photo.",
        "Spot every face in the scene and tell me where each one is.",
    ],
    "pedestrian_detection": [
        "This is a person detection task. Identify the visible persons in the image and draw a bounding box around each one.",
        "Detect all pedestrians in this image and give their bounding boxes.",
        "Find every person in the picture and report the box of each as [x1, y1, x2, y2].",
        "Where are the people in this image? Give a bounding box for each person.",
        "Locate all the pedestrians that appear in this scene.",
        "Please mark every visible person with a bounding box.",
        "How many persons are there in the picture, and where are they located?",
        "Perform pedestrian detection on this image.",
        "Output the bounding boxes of all the people you can see.",
        "List the positions of all persons in this photo as bounding boxes.",
        "Identify each human in the image and tell me where each one stands.",
    ],
    "pose_estimation": [
        "This is a human posture estimation task. This task requires locating the key points of human body.",
        "Estimate the pose of every person in the image by giving the coordinates of their body keypoints.",
        "Locate the body joints of each person in this picture.",
        "Where are the keypoints (head, shoulders, elbows, wrists, hips, knees, ankles) of the people in this image?",
        "Please perform human pose estimation and list each person's keypoints with coordinates.",
        "Give the position of every visible body joint of the persons in the picture.",
        "Find the skeleton keypoints of each human in this image.",
        "Detect the human keypoints in this photo and output their pixel coordinates.",
        "For each person in the image, report where their joints are.",
        "Describe the posture of each person by locating their body keypoints.",
        "Mark the body landmarks of every person shown in the image.",
    ],
    "action_recognition": [
        "Would you mind letting me know what this person is currently occupied with?",
        "What is the person in the picture doing?",
        "This is an action recognition task. Tell me which action the person is performing.",
        "Describe the activity of the person in this image.",
        "What action can you see in this picture?",
        "Which activity is being carried out by the human in the image?",
        "Please recognise the action of the person shown here.",
        "What is happening in this image? Name the person's action.",
        "Identify what this person is busy with.",
        "Classify the human action depicted in this picture.",
        "Can you tell what the person is engaged in?",
    ],
    "expression_recognition": [
        "What is the facial expression of this person?",
        "This is an expression recognition task. Which emotion does this face show?",
        "How does this person feel, judging from the face?",
        "Recognise the emotion expressed by the face in the picture.",
        "Please classify the facial expression in this image.",
        "What emotion can you read from this person's face?",
        "Tell me the expression on the face shown here.",
        "Which of the basic expressions does this face display?",
        "Analyse the face and name its expression.",
        "What mood does the facial expression of this person convey?",
        "Identify the emotional state visible on this face.",
    ],
    "pedestrian_attribute": [
        "Please analyze this pedestrian image comprehensively, paying special attention to the finer details, and list the attributes of this person.",
        "What attributes does this pedestrian have?",
        "This is a pedestrian attribute recognition task. List the attributes that apply to this person.",
        "Describe the visual attributes of the person in the image, such as gender, age, clothing and accessories.",
        "Which attributes can you recognise for this pedestrian?",
        "Tell me the appearance attributes of this person.",
        "Please recognise the gender, age, clothes and carried items of this pedestrian.",
        "List every attribute of the person shown in this picture.",
        "What can you say about this person's appearance? Answer with attributes.",
        "Identify the pedestrian's attributes from the image.",
        "Give the attributes of the person in the picture, including clothing and belongings.",
    ],
    "caption": [
        "Describe this image.",
        "What does this picture show?",
        "Write a short caption for this image.",
        "Give a brief description of the scene.",
        "Summarise the content of this photo in one sentence.",
        "What is in this image?",
        "Provide a caption for the picture.",
        "Describe what you see.",
        "Tell me what is happening in this picture.",
        "Caption this image.",
    ],
}

NEEDS_RESOLUTION = {"face_detection", "pedestrian_detection", "pose_estimation"}

# Instructions per image in the paper's Table 1 (instructions / images): 2 for every task but expression (1).
INSTRUCTIONS_PER_IMAGE = {
    "action_recognition": 2, "pedestrian_detection": 2, "pedestrian_attribute": 2,
    "expression_recognition": 1, "face_detection": 2, "pose_estimation": 2, "caption": 1,
}


def stable_index(*parts: object, modulo: int) -> int:
    """A deterministic choice from the parts (no Python hash randomisation), so re-runs are byte-identical."""
    digest = hashlib.sha1("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % modulo


def instructions_for(task: str, key: str, width: int, height: int, count: Optional[int] = None,
                     seed: int = 0, pool: Optional[Dict[str, List[str]]] = None) -> List[str]:
    """``count`` distinct instructions for one image, chosen deterministically from ``seed`` and ``key``."""
    templates = (pool or {}).get(task) or SEEDS[task]
    count = INSTRUCTIONS_PER_IMAGE[task] if count is None else count
    # Order the pool by a per-image hash and take the first ``count``: distinct, stable, evenly spread.
    chosen = sorted(templates, key=lambda t: stable_index(seed, task, key, t, modulo=1 << 62))[:count]
    out = []
    for t in chosen:
        text = t + (RESOLUTION.format(width=width, height=height) if task in NEEDS_RESOLUTION else "")
        out.append(text)
    return out
